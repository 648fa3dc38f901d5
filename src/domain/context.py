"""The tape around an anomaly: its symbol's trades just before and just after the print it was found at.

An analyst judges a print by its neighbours (was the big print one of many, did the price come
back), but the tape itself is never stored. So each symbol keeps its last `CONTEXT_TRADES` trades
(a small ring, `tape_state`, in its own store beside the detectors' state), and:

- an anomaly leaves detection carrying the trades before it (`Anomaly.context`): the ring and the
  batch's earlier trades of its symbol, at most `CONTEXT_TRADES`, none older than `CONTEXT_WINDOW_NS`;
- the trades after it are collected while its incident is open (domain.incidents), at most
  `CONTEXT_TRADES` arriving after it, none later than `CONTEXT_WINDOW_NS`, and leave with the incident.
  An anomaly is not held back waiting for trades that have not happened yet.

"The print it was found at" is the anomaly's own print, except for a rate episode, which is found
(reported) at the print that completed its measure: its context is the end of the episode, up to
and including that print (which is neither the anomaly's own print nor one of the trades after),
and holds the print the episode is anchored at only when the episode was short (`own_print_at`
finds it): on the real NVDA days no episode's did, its end being up to hundreds of trades later, so a
reader marks the trades between as not kept.
Both sides depend only on the symbol's trades in arrival order, never on how the stream was cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from domain.compiled import kernel
from domain.detectors.base import record
from domain.market import MarketBatch
from domain.model import Print

CONTEXT_TRADES = 10  # trades each side of an anomaly
CONTEXT_WINDOW_NS = 60_000_000_000  # and none further than this from it
# What a tape keeps, said with it (`show`, the report): '0 trades before its print' read as a symbol's
# first print, where it had only not traded in the minute before.
TAPE_BOUNDS = f"at most {CONTEXT_TRADES} each side, none over {CONTEXT_WINDOW_NS // 1_000_000_000} s away"

_SIDES = {65: "A", 66: "B"}


def tape_state(n: int = CONTEXT_TRADES) -> np.ndarray:
    """A symbol's last `n` trades, in a ring: slot `(head - count + j) % n` is the j-th oldest."""
    dtype = np.dtype([("ts", "i8", (n,)), ("price", "f8", (n,)), ("size", "i8", (n,)), ("side", "u1", (n,)),
                      ("head", "u1"), ("count", "u1")])
    return record(dtype)


@kernel
def _remember(slot: np.ndarray, ts: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray,
              r_ts: np.ndarray, r_price: np.ndarray, r_size: np.ndarray, r_side: np.ndarray,
              head: np.ndarray, count: np.ndarray) -> None:
    n = r_ts.shape[1]
    for i in range(len(ts)):
        s = slot[i]
        h = head[s]
        r_ts[s, h], r_price[s, h], r_size[s, h], r_side[s, h] = ts[i], price[i], np.int64(size[i]), side[i]
        head[s] = (h + 1) % n
        if count[s] < n:
            count[s] += 1


def remember(market: MarketBatch, tapes: np.ndarray) -> None:
    """Fold the batch's trades into each symbol's ring (`tapes`: one tape_state row per market.symbols)."""
    _remember(market.slot, market.ts, market.price, market.size, market.side.view(np.uint8),
              tapes["ts"], tapes["price"], tapes["size"], tapes["side"], tapes["head"], tapes["count"])


def _print(ts: int, price: float, size: float, side: int) -> Print:
    return Print(int(ts), float(price), int(size), _SIDES.get(int(side), "N"))


def before(market: MarketBatch, starts: np.ndarray, found: int, tape: np.void,
           through: bool = False) -> tuple[Print, ...]:
    """The trades of the symbol at grouped position `found` that came before it, oldest first: the
    batch's own, then (when fewer than CONTEXT_TRADES) its ring as it was before the batch (`tape`);
    `through`: up to and including `found` (a rate episode's, found at the print that completed its
    measure). `starts`: the grouped position where each symbol's run begins (ascending)."""
    start = int(starts[np.searchsorted(starts, found, side="right") - 1])
    since = int(market.ts[found]) - CONTEXT_WINDOW_NS
    end = found + 1 if through else found
    lo = max(start, end - CONTEXT_TRADES)
    side = market.side.view(np.uint8)
    batch = [_print(market.ts[i], market.price[i], market.size[i], side[i]) for i in range(lo, end)]
    older = last_trades(tape, CONTEXT_TRADES - len(batch))
    return tuple(p for p in older + tuple(batch) if p.ts_event >= since)


def last_trades(tape: np.void, most: int = CONTEXT_TRADES) -> tuple[Print, ...]:
    """The newest `most` trades of a symbol's ring (`tape`: its tape_state row), oldest first."""
    n, count, head = len(tape["ts"]), int(tape["count"]), int(tape["head"])
    out = []
    for j in range(max(0, count - most), count):
        k = (head - count + j) % n
        out.append(_print(tape["ts"][k], tape["price"][k], tape["size"][k], tape["side"][k]))
    return tuple(out)


def after(market: MarketBatch, first: int, end: int, since_ts: int, have: int) -> list[Print]:
    """Trades at grouped positions `first` .. `end` - 1 (one symbol's, arrival order) that extend an
    after-context of `have` trades of a print at `since_ts`."""
    out: list[Print] = []
    side = market.side.view(np.uint8)
    for i in range(first, min(end, first + CONTEXT_TRADES - have)):
        if int(market.ts[i]) > since_ts + CONTEXT_WINDOW_NS:
            break
        out.append(_print(market.ts[i], market.price[i], market.size[i], side[i]))
    return out


class BatchTape:
    """A detect call's accepted trades, each symbol's as one run in arrival order: where the trades
    after an anomaly are read from (domain.incidents), in this batch and the next."""

    def __init__(self, market: MarketBatch | None = None, starts: np.ndarray | None = None) -> None:
        self.market = market
        self._starts = starts
        self._runs: dict[str, tuple[int, int]] | None = None

    @property
    def runs(self) -> dict[str, tuple[int, int]]:
        """symbol -> (first, end) grouped positions of its trades. Built on first use: most batches
        have no open incident to extend, and a loop over every symbol of every batch is what the
        core avoids."""
        if self._runs is None:
            self._runs = {}
            starts, market = self._starts, self.market
            if market is not None and starts is not None and len(starts):
                ends = np.r_[starts[1:], len(market)]
                for s, e in zip(starts.tolist(), ends.tolist()):
                    self._runs[market.symbols[market.slot[s]]] = (s, e)
        return self._runs

    def after(self, symbol: str, since_ts: int, have: int, found: int = -1) -> list[Print]:
        """More of the after-context (of `have` trades) of `symbol`'s print at `since_ts`: the trades
        of this batch after grouped position `found` (-1: the print was in an earlier batch)."""
        run = self.runs.get(symbol)
        if self.market is None or run is None:
            return []
        start, end = run
        return after(self.market, max(start, found + 1), end, since_ts, have)

    def found_ts(self, found: int) -> int:
        assert self.market is not None
        return int(self.market.ts[found])


def own_print_at(context: Sequence[Print], ts_event: int, price: float, size: int) -> int | None:
    """Where an anomaly's own print is among the trades of its context: a rate episode's context runs
    past it, to the print that completed its measure, and holds it when the episode was short (the
    first print of its time, price and size). None when the context ends before it (every other detector's) or no
    longer reaches back to it: a reader shows it in its place among them."""
    if not context or context[-1].ts_event <= ts_event:
        return None
    return next((j for j, p in enumerate(context)
                 if p.ts_event == ts_event and p.price == price and p.size == size), None)
