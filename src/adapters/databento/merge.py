"""Merge per-file trade streams into one event-time-ordered stream, a chunk at a time, with numpy."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk

_BEFORE_ANY = np.iinfo(np.int64).min


# How far back in event time a print may come after a later one of its file and still be put in its
# place: Databento files are in capture order (ts_recv), so a consolidated feed's prints can arrive a
# little out of event-time order. Fixed, so what is reordered never depends on how the file is read
# (chunk size); a print later than this stays behind the newer prints, where the duplicate guard
# refuses it as out_of_order if its symbol has moved past it.
REORDER_NS = 5 * 10**9


class _Lane:
    """One file's stream: its not yet emitted trades in merge order, and their merge keys.

    How far the file has got is `reached`: the newest time two consecutive prints have both passed,
    so a lone print dated far ahead (a typo'd year) moves nothing; it waits, in its place by time,
    for the file to get there. Nor does a print vouch for a time after its receipt (ts_recv, when
    known): two typo'd prints in a row move nothing either (a print dated over a minute after its
    receipt is refused as bad_timestamp, by the file's reader or else by the engine). A print's key
    is its event time, or, when it is more than REORDER_NS behind `reached`, `reached` itself (it
    stays behind those prints). No later print can then have a key below `floor` (`reached` less
    REORDER_NS), so every buffered key under it is final, whatever the chunks were."""

    def __init__(self, stream: Iterator[SourceChunk]) -> None:
        self.stream = stream
        self.buffer = np.empty(0, TRADE_DTYPE)
        self.keys = np.empty(0, np.int64)
        self.places = np.empty(0, np.int64)  # each buffered trade's place (SourceChunk.places; -1: unknown)
        self.reached = _BEFORE_ANY
        self.last = _BEFORE_ANY  # the time the last print read vouches for (see pull)
        self.done = False
        # Dead letters read, not emitted yet: (their place, how many merged trades go before them as far
        # as known, the letter), in file order. Each waits for the file's trades before it (`emitted`).
        self.letters: list[tuple[int, int, DeadLetter]] = []
        self.top_place = -1  # the highest place read so far
        self.emitted_end = 0  # merged trades up to and including this file's last emitted one

    @property
    def floor(self) -> int:
        return self.reached - REORDER_NS if self.reached != _BEFORE_ANY else _BEFORE_ANY

    def pull(self) -> None:
        chunk = next(self.stream, None)
        if chunk is None:
            self.done = True
            return
        places = chunk.places if chunk.places is not None else np.full(len(chunk.trades), -1, np.int64)
        if len(places):
            self.top_place = max(self.top_place, int(places.max()))
        # A letter whose place is not known stands after everything read so far.
        self.letters += sorted(((d.place if d.place >= 0 else self.top_place + 1, self.emitted_end, d)
                                for d in chunk.dead_letters), key=lambda x: x[0])
        if len(chunk.trades) == 0:
            return
        ts, recv = chunk.trades["ts_event"], chunk.trades["ts_recv"]
        vouched = np.where(recv > 0, np.minimum(ts, recv), ts)
        passed = np.minimum(vouched, np.concatenate(([self.last], vouched[:-1])))  # by this print and the one before
        reached = np.maximum.accumulate(np.concatenate(([self.reached], passed)))  # [i]: before print i
        before = reached[:-1]
        in_reach = (before == _BEFORE_ANY) | (ts >= before - REORDER_NS)  # (no wrap-around below int64)
        keys = np.where(in_reach, ts, before)
        self.reached, self.last = int(reached[-1]), int(vouched[-1])
        trades = np.concatenate((self.buffer, chunk.trades)) if len(self.buffer) else chunk.trades
        keys = np.concatenate((self.keys, keys)) if len(self.keys) else keys
        places = np.concatenate((self.places, places)) if len(self.places) else places
        if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            order = np.argsort(keys, kind="stable")
            trades, keys, places = trades[order], keys[order], places[order]
        self.buffer, self.keys, self.places = trades, keys, places

    def take_before(self, floor: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(trades, their keys, their places) of every buffered key below `floor` (None: all)."""
        # Strictly before: a later print of some file may still get a key equal to the floor.
        cut = len(self.buffer) if floor is None else int(np.searchsorted(self.keys, floor, side="left"))
        head, self.buffer = self.buffer[:cut], self.buffer[cut:]
        keys, self.keys = self.keys[:cut], self.keys[cut:]
        places, self.places = self.places[:cut], self.places[cut:]
        return head, keys, places

    def emitted(self, places: np.ndarray, first: int, at: np.ndarray | None) -> None:
        """This file's trades of `places` went out at merged positions `first` + `at` (None: one after
        the other): each letter waiting learns which of them stood before it in the file, and must go
        after them."""
        if not len(places):
            return
        self.emitted_end = max(self.emitted_end, first + (len(places) if at is None else int(at.max()) + 1))
        if not self.letters:
            return
        at = first + (np.arange(len(places)) if at is None else at)
        by_place = np.argsort(places, kind="stable")
        latest = np.maximum.accumulate(at[by_place])  # [i]: the last to go of the i + 1 lowest places
        below = np.searchsorted(places[by_place], [place for place, _, _ in self.letters], side="left")
        self.letters = [(place, max(after, int(latest[n - 1]) + 1) if n else after, letter)
                        for (place, after, letter), n in zip(self.letters, below.tolist())]

    def ready_letters(self) -> list[tuple[int, DeadLetter]]:
        """(the merged trades before it, the letter) of each letter none of whose file's earlier
        trades is still to go."""
        if not self.letters:
            return []
        lowest = int(self.places.min()) if len(self.places) else None
        cut = len(self.letters) if lowest is None else next(
            (i for i, (place, _, _) in enumerate(self.letters) if place > lowest), len(self.letters))
        ready, self.letters = self.letters[:cut], self.letters[cut:]
        return [(after, letter) for _, after, letter in ready]


def merge_by_event_time(streams: Sequence[Iterator[SourceChunk]],
                        describe: Callable[[int], str] | None = None) -> Iterator[SourceChunk]:
    """k-way merge by event time: emit every buffered trade whose key is below the lowest floor
    among open files (`_Lane`), so the trades come out in the same order however the files are
    chunked.

    Always reading next from the file that is furthest behind keeps memory near one chunk per file.
    Prints of several files at one timestamp are put in sequence order (one feed split over several
    files comes back in its own order; the guard refuses a sequence that goes back as a resend),
    then file order, then record order. A print more than REORDER_NS behind how far its file has
    got is not moved back, and the guard rejects it if its symbol is past it. Each trade keeps its
    place (SourceChunk.places), which `describe` names.

    A dead letter comes out after every trade of its file that stands before it there (a bad row,
    after the file's trades above it; a file's unreadable rest, after all it read), in the chunk
    where the last of those trades is, `dead_letters_at` saying after how many of its trades: ingest
    sends it with the trades around its place, not a chunk early.
    """
    lanes = [_Lane(stream) for stream in streams]
    try:
        yield from _merged(lanes, describe)
    finally:  # stopped early or failed: close every file's stream (and its reader thread, if any)
        for stream in streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def _merged(lanes: list[_Lane], describe: Callable[[int], str] | None) -> Iterator[SourceChunk]:
    sent = 0  # merged trades emitted so far
    while True:
        open_lanes = [lane for lane in lanes if not lane.done]
        if not open_lanes:
            break
        behind = min(open_lanes, key=lambda lane: lane.reached)
        behind.pull()
        floors = [lane.floor for lane in lanes if not lane.done]
        floor = min(floors) if floors else None
        heads = [(lane, head) for lane in lanes if len((head := lane.take_before(floor))[0])]
        at: list[np.ndarray | None] = [None]  # where each file's trades went among them (None: in order)
        if len(heads) == 1:
            trades, _, places = heads[0][1]
        elif heads:
            trades, places, went = _interleave([head for _, head in heads])
            at = list(went)
        else:
            trades, places = np.empty(0, TRADE_DTYPE), np.empty(0, np.int64)
        for (lane, (_, _, lane_places)), lane_at in zip(heads, at):
            lane.emitted(lane_places, sent, lane_at)
        # A letter goes after every earlier trade of its file; one whose trades went in an earlier
        # chunk (with other files' since) goes at the start of this one.
        ready = sorted(((max(after - sent, 0), letter) for lane in lanes for after, letter in lane.ready_letters()),
                       key=lambda x: x[0])
        if len(trades) or ready:
            yield SourceChunk(trades, [letter for _, letter in ready], places, describe,
                              dead_letters_at=[after for after, _ in ready])
        sent += len(trades)


def _interleave(heads: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Several files' trades (and their places) by merge key, then sequence (stable: then file and
    record order), and where each file's trades went among them."""
    trades = np.concatenate([trades for trades, _, _ in heads])
    keys = np.concatenate([keys for _, keys, _ in heads])
    order = np.lexsort((trades["sequence"], keys))
    went = np.empty(len(order), np.int64)
    went[order] = np.arange(len(order))
    ends = np.cumsum([len(head) for head, _, _ in heads])
    return trades[order], np.concatenate([places for _, _, places in heads])[order], np.split(went, ends[:-1])
