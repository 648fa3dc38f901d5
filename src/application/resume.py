"""Resuming an interrupted file ingest: which of the files' trades the trade log holds already.

What ingest writes makes this a look-up, not a search. Each `publish` covers the source's trades
[first, stop) (an `IngestMark` on every message), cut by `symbol_batches` into runs whose order is
a function of those trades alone; a partition receives its share of the runs in that order, and the
idempotent producer lets a partition hold only a prefix of what was sent to it. So a partition's last
message says it all: every trade of the partition before `first` is there; of [first, stop), those
up to the message's last trade in that order; none after. Partitions are reached unevenly (each has
its own last message), and trades at equal timestamps are told apart by the whole row (publisher,
instrument, ts_event, sequence and the rest), never by time alone.

A resumed ingest keeps the invariant for the next interruption: a partly sent window is sent again
as one `publish` of the same trades, minus its prefix, so its runs keep their order. A source's dead
letter goes right after the first message of the publish holding the first trade after it: it went
if and only if the log holds a window reaching past that trade (`dead_letter_sent`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from application.ingest import symbol_batches
from domain.errors import ResumeError
from domain.model import DeadLetter
from domain.ports import IngestDeadLetters, LogTail, TradeLogTails, TradeSource
from domain.symbols import SymbolRuns, factorize


@dataclass(frozen=True, slots=True)
class Reached:
    """How far the log holds one partition's trades of the source: all of them before `first`, those
    `sent` marks in [first, stop) (a prefix of that window's runs in the order they went), none after."""

    partition: int
    offset: int  # of its last message
    first: int
    stop: int
    sent: np.ndarray  # bool per trade of the source's [first, stop)
    trades: int  # the partition's trades of the source on the log


@dataclass
class ResumePlan:
    """What to skip of a source whose ingest was interrupted, and how to cut it so that a window a
    partition holds part of is sent again whole (`cut`)."""

    topic: str
    partition_of: Callable[[str], int]
    partitions: int
    reached: dict[int, Reached] = field(default_factory=dict)
    first_unsent: int = 0  # the first trade of the source the log does not hold
    source: str = ""  # the source's id (IngestMark.source)
    dead_letters: IngestDeadLetters | None = None  # asked only of a source without trades
    _held: np.ndarray | None = None  # trades of a window not read to its end yet (see cut)
    _held_at: int = 0
    _read: int = 0
    _known: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(r.trades for r in self.reached.values())

    @property
    def windows(self) -> list[tuple[int, int]]:
        return sorted({(r.first, r.stop) for r in self.reached.values()})

    @property
    def frontier(self) -> int:
        """From here on the log holds none of the source."""
        return max((r.stop for r in self.reached.values()), default=0)

    def describe(self) -> str:
        """One line for the operator: what was skipped, and where each partition stood."""
        if not self.reached:
            return f"resume: {self.topic} holds none of these files' trades; sending them all"
        stood = ", ".join(f"partition {p} to offset {r.offset}" for p, r in sorted(self.reached.items()))
        rest = sorted(set(range(self.partitions)) - set(self.reached))
        none = f"; partitions {', '.join(map(str, rest))} hold none of them" if rest else ""
        return (f"resume: skipped {self.skipped:,} trades of these files already on {self.topic} "
                f"({stood}{none})")

    def dead_letter_sent(self, carrier: int) -> bool:
        """Whether a dead letter went whose carrier is trade `carrier` of the source: it went right after
        the first message of the publish holding that trade (IngestTrades), so yes when the log holds
        a window reaching past it, that publish's or a later one's."""
        return self.frontier > carrier

    async def unsent_without_trades(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Of a source without trades, whose letters nothing on the trades topic accounts for: those
        the dead-letter topic does not hold (all of them when it cannot be asked)."""
        if self.dead_letters is None or not letters:
            return letters
        held = await self.dead_letters.origins(self.source)
        return [letter for letter in letters if letter.origin not in held]

    def cut(self, trades: np.ndarray) -> list[tuple[np.ndarray, int, bool]]:
        """The next read trades as pieces (trades, position of the first, whether it must go in one
        `publish`): cut where a partly sent window starts and ends, that window whole. A window
        that does not end in these trades is held back until it does."""
        self._read += len(trades)
        at = self._read - len(trades)
        if self._held is not None:
            trades, at, self._held = np.concatenate((self._held, trades)), self._held_at, None
        end, pos, pieces = at + len(trades), at, []
        # Also cut where the log's trades end for all partitions: what precedes goes unpaced, unsent.
        lone = [(self.first_unsent, self.first_unsent)] if not any(
            first < self.first_unsent < stop for first, stop in self.windows) else []
        for first, stop in sorted(self.windows + lone):
            if stop <= pos:
                continue
            if first >= end:
                break
            if first > pos:
                pieces.append((trades[pos - at:first - at], pos, False))
            if stop > end:
                self._held, self._held_at = trades[first - at:], first
                return pieces
            if stop > first:
                pieces.append((trades[first - at:stop - at], first, True))
            pos = max(pos, stop)
        if pos < end:
            pieces.append((trades[pos - at:], pos, False))
        return pieces

    def finish(self) -> None:
        if self._held is not None:
            raise ResumeError(f"these files ended within trades {self._held_at:,}-{self._held_at + len(self._held):,}, "
                              f"which {self.topic} holds part of: they changed while being read")

    def unsent(self, runs: SymbolRuns, first: int) -> tuple[SymbolRuns, int]:
        """`runs` (of the source's trades from position `first` on) without the trades the log
        holds, and how many those were. A run keeps its place; only its sent prefix goes."""
        if first >= self.frontier or not len(runs):
            return runs, 0
        on = self.on_log(runs.trades, first)
        ordered = on if runs.order is None else on[runs.order]
        held = np.concatenate(([0], np.cumsum(ordered)))
        taken = held[runs.starts + runs.lengths] - held[runs.starts]
        if not bool(np.all(held[runs.starts + taken] - held[runs.starts] == taken)):
            raise ResumeError(f"{self.topic} holds trades {first:,}-{first + len(on):,} of these files in an order "
                              "their ingest does not send: it was not written by this version's ingest of them")
        keep = runs.lengths > taken
        return SymbolRuns(runs.trades, runs.names, runs.codes[keep], (runs.starts + taken)[keep],
                          (runs.lengths - taken)[keep], runs.order), int(taken.sum())

    def on_log(self, trades: np.ndarray, first: int) -> np.ndarray:
        """Per trade of `trades` (the source's from position `first` on): whether the log holds it."""
        on = np.zeros(len(trades), bool)
        if not self.reached or not len(trades):
            return on
        part = self.partitions_of(trades)
        firsts, stops = np.zeros(self.partitions, np.int64), np.zeros(self.partitions, np.int64)
        for p, r in self.reached.items():
            firsts[p], stops[p] = r.first, r.stop
        pos = first + np.arange(len(trades))
        on = pos < firsts[part]
        for p, r in self.reached.items():
            if r.stop <= first or r.first >= first + len(trades):
                continue
            if r.first < first or r.stop > first + len(trades):
                raise ResumeError(f"trades {r.first:,}-{r.stop:,} were cut apart on resuming (a bug: report it)")
            mine = (part == p) & (pos >= r.first) & (pos < r.stop)
            on[mine] = r.sent[pos[mine] - r.first]
        return on

    def partitions_of(self, trades: np.ndarray) -> np.ndarray:
        codes, names = factorize(trades["symbol"])
        known = self._known
        for name in names:
            if name not in known:
                known[name] = self.partition_of(name)
        return np.array([known[n] for n in names], np.int64)[codes]


async def plan_resume(log: TradeLogTails, source: TradeSource, source_id: str, topic: str,
                      dead_letters: IngestDeadLetters | None = None) -> ResumePlan:
    """The plan for ingesting `source` (named `source_id`) to `topic` again, skipping what it holds
    (and, for a source without trades, the dead letters `dead_letters` holds).

    Reads the last message of each partition, then the source up to the furthest of them (in a
    thread); raises ResumeError, before anything is sent, when the log's end does not come from
    these files as this ingest writes them."""
    tails = await log.tails()
    own = [t for t in tails if t.mark is not None and t.mark.source == source_id]
    plan = ResumePlan(topic, log.partition_of, log.partitions, source=source_id, dead_letters=dead_letters)
    others = [t for t in tails if t.offset >= 0 and t not in own]
    if not own:
        if others:
            t = others[0]
            raise ResumeError(f"{topic} ends with messages that are not from these files ({_whence(t, topic)}): "
                              f"nothing of them to resume; ingest them without --resume, or to another topic")
        return plan
    for t in own:
        if not len(t.trades):
            raise ResumeError(f"{_at(t, topic)} is marked as from these files but holds no trades this ingest can "
                              "read: it was not written by this version's ingest")
        if t.partitions != log.partitions:
            raise ResumeError(f"{_at(t, topic)} was written for {t.partitions} partitions, {topic} has "
                              f"{log.partitions}: its trades are not where these files' would go")
    newest = max(t.timestamp_ms for t in own)
    later = [t for t in others if t.timestamp_ms > newest]
    if later:
        raise ResumeError(f"{_at(later[0], topic)} is not from these files and was written after their last message "
                          f"there: something else wrote to {topic} since; resuming would have to guess")
    windows = sorted({(t.mark.first, t.mark.stop) for t in own if t.mark is not None})
    for (_, stop), (first, _) in zip(windows, windows[1:]):
        if first < stop:
            raise ResumeError(f"{topic}'s last messages hold overlapping parts of these files ({windows}): "
                              "they were not written by this version's ingest of them")
    found, before, plan.first_unsent = await asyncio.to_thread(_read_windows, plan, source, own, windows)
    for t in own:
        assert t.mark is not None
        plan.reached[t.partition] = _reached(plan, t, found[(t.mark.first, t.mark.stop)], before[t.partition], topic)
    for p, r in plan.reached.items():
        trades = found[(r.first, r.stop)]
        missing = np.flatnonzero((plan.partitions_of(trades) == p) & ~r.sent)
        if len(missing):
            plan.first_unsent = min(plan.first_unsent, r.first + int(missing[0]))
    return plan


def _read_windows(plan: ResumePlan, source: TradeSource, own: list[LogTail], windows: list[tuple[int, int]],
                  ) -> tuple[dict[tuple[int, int], np.ndarray], dict[int, int], int]:
    """Read the source up to the last window: each window's trades, each partition's trades before
    its window, and the first trade that is not on the log for sure (the windows may hold earlier)."""
    firsts = {t.partition: t.mark.first for t in own if t.mark is not None}
    stops = {t.partition: t.mark.stop for t in own if t.mark is not None}
    first_of, stop_of = np.zeros(plan.partitions, np.int64), np.zeros(plan.partitions, np.int64)
    for p in firsts:
        first_of[p], stop_of[p] = firsts[p], stops[p]
    reached = np.zeros(plan.partitions, bool)
    reached[list(firsts)] = True
    frontier = windows[-1][1]
    parts: dict[tuple[int, int], list[np.ndarray]] = {w: [] for w in windows}
    before = np.zeros(plan.partitions, np.int64)
    first_unsent, read = frontier, 0
    chunks: Iterator = iter(source.chunks())
    try:
        for chunk in chunks:
            trades, at = chunk.trades, read
            read += len(trades)
            if len(trades):
                part = plan.partitions_of(trades)
                pos = at + np.arange(len(trades))
                early = pos < first_of[part]
                before += np.bincount(part[early], minlength=plan.partitions)
                unsent = np.flatnonzero(~reached[part] | (pos >= stop_of[part]))
                if len(unsent):
                    first_unsent = min(first_unsent, at + int(unsent[0]))
                for first, stop in windows:
                    if first < read and stop > at:
                        parts[(first, stop)].append(trades[max(first, at) - at:min(stop, read) - at].copy())
            if read >= frontier:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # a reader thread stops now
            close()
    if read < frontier:
        t = next(t for t in own if t.mark is not None and t.mark.stop > read)
        raise ResumeError(f"{_whence(t, plan.topic)}, but these files hold {read:,} trades: they are not the files "
                          f"ingested there")
    return ({w: np.concatenate(found) for w, found in parts.items()}, {p: int(before[p]) for p in firsts},
            first_unsent)


def _reached(plan: ResumePlan, tail: LogTail, window: np.ndarray, before: int, topic: str) -> Reached:
    """Where in its window the partition's last message ends: the window's runs are cut again as
    ingest cut them, and the message's trades found as the last of the partition's so far."""
    assert tail.mark is not None
    first, stop, p = tail.mark.first, tail.mark.stop, tail.partition
    runs = symbol_batches(window, max(1, len(window)))
    order = np.arange(len(window)) if runs.order is None else runs.order
    mine = order[plan.partitions_of(window)[order] == p]  # the partition's trades of the window, as sent
    rows, message = _rows(window[mine]), _rows(tail.trades)
    k = len(message)
    ends = [int(j) for j in np.flatnonzero(rows == message[-1]) if j + 1 >= k]
    end = next((j for j in ends if bool(np.all(rows[j + 1 - k:j + 1] == message))), None)
    if end is None:
        raise ResumeError(f"{_at(tail, topic)} says it holds trades of these files' {first:,}-{stop:,}, but those are "
                          f"not its trades: the files are not the ones ingested there (or changed since)")
    sent = np.zeros(len(window), bool)
    sent[mine[:end + 1]] = True
    return Reached(p, tail.offset, first, stop, sent, before + end + 1)


def _rows(trades: np.ndarray) -> np.ndarray:
    """Each trade as one opaque value, every field in it: equal rows are the same trade, ties at
    one timestamp told apart by their sequence (and the rest)."""
    trades = np.ascontiguousarray(trades)
    return trades.view(np.dtype((np.void, trades.dtype.itemsize)))


def _at(tail: LogTail, topic: str) -> str:
    return f"{topic}[{tail.partition}]@{tail.offset}"


def _whence(tail: LogTail, topic: str) -> str:
    mark = tail.mark
    said = "no ingest mark" if mark is None else f"from source {mark.source}, trades {mark.first:,}-{mark.stop:,}"
    return f"{_at(tail, topic)}: {said}"

