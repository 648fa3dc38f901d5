"""Duplicate and ordering guard per symbol, in a fixed-size state record."""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel, trade_key

ACCEPTED, DUPLICATE, OUT_OF_ORDER, REDELIVERED = 0, 1, 2, 3
VERDICTS = ("", "duplicate", "out_of_order", "duplicate")  # verdict code -> dead-letter reason
RING = 8  # digests of a symbol's last accepted trades

GUARD_DTYPE = np.dtype([
    ("last_ts", "i8"),         # newest accepted event time (-1: none yet)
    ("last_publisher", "u2"),  # publisher and sequence of the last trade accepted at last_ts
    ("last_sequence", "u8"),
    ("ring", "u8", (RING,)),   # trade_key digests of the last RING accepted trades
    ("ring_next", "u1"),
    ("trades", "u4"),          # trades accepted so far (modulo 2**32)
])


def initial_guard_state() -> np.ndarray:
    row = np.zeros(1, GUARD_DTYPE)
    row["last_ts"] = -1
    return row


@kernel
def _check(slot: np.ndarray, ts: np.ndarray, pub: np.ndarray, inst: np.ndarray, seq: np.ndarray,
           last_ts: np.ndarray, last_pub: np.ndarray, last_seq: np.ndarray, ring: np.ndarray,
           ring_next: np.ndarray, trades: np.ndarray, verdict: np.ndarray, passed: np.ndarray) -> None:
    for i in range(len(ts)):
        s = slot[i]
        key = trade_key(pub[i], inst[i], ts[i], seq[i])
        seen = False
        for r in range(ring.shape[1]):
            if ring[s, r] == key:
                seen = True
                break
        t = ts[i]
        if seen:
            verdict[i] = DUPLICATE
        elif t < last_ts[s]:
            verdict[i] = OUT_OF_ORDER
            passed[i] = last_ts[s]
        elif t == last_ts[s] and pub[i] == last_pub[s] and seq[i] <= last_seq[s]:
            # Behind the feed's sequence at the newest timestamp: a redelivery the ring has forgotten.
            verdict[i] = REDELIVERED
            passed[i] = last_seq[s]
        else:
            verdict[i] = ACCEPTED
            last_ts[s] = t
            last_pub[s] = pub[i]
            last_seq[s] = seq[i]
            ring[s, ring_next[s]] = key
            ring_next[s] = (ring_next[s] + 1) % ring.shape[1]
            trades[s] += 1


class SequenceGuard:
    """Tells duplicates and out-of-order prints apart from new trades, per symbol.

    A trade is identified by (publisher, instrument, ts_event, sequence); ITCH sequence numbers
    restart every day, so the event time is part of the key. A symbol's state keeps the newest
    accepted time, the feed position at that time, and digests of its last few trades: a repeat of
    one of those is a duplicate, anything older than the newest time is out of order, and at the
    newest time a sequence number the feed has already passed is a redelivery. Memory is fixed.
    """

    def check(self, slot: np.ndarray, ts: np.ndarray, publisher: np.ndarray, instrument: np.ndarray,
              sequence: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Update `state` (GUARD_DTYPE rows, in place) and return a verdict code per trade and what it
        was refused against (an OUT_OF_ORDER's symbol's newest accepted time, a REDELIVERED's feed
        sequence at that time; undefined elsewhere); trades of a symbol must come in the order they
        arrived."""
        verdict = np.empty(len(ts), np.int8)
        passed = np.empty(len(ts), np.int64)
        _check(slot, ts, publisher, instrument, sequence, state["last_ts"], state["last_publisher"],
               state["last_sequence"], state["ring"], state["ring_next"], state["trades"], verdict, passed)
        return verdict, passed


def explain(verdict: int, ts: int, passed: int) -> str:
    """Why the guard refused a trade (event time `ts`; `passed` as `SequenceGuard.check` gives it), for
    its dead letter."""
    if verdict == OUT_OF_ORDER:
        return (f"{(passed - ts) / 1e9:,.6f} s older than the symbol's newest accepted print "
                f"(ts_event {passed})")
    if verdict == REDELIVERED:
        return f"a sequence the feed has passed at the symbol's newest time (it reached {passed})"
    return "the same trade (publisher, instrument, ts_event, sequence) was accepted already"
