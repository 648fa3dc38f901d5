"""Read-ahead of a trade source on a background thread: order, budget, errors, stopping early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from adapters.prefetch import PrefetchingSource, ReadAheadBudget, read_ahead
from domain.model import TRADE_DTYPE
from domain.ports import SourceChunk


class CountingSource:
    """Chunks of `size` trades (sequence = chunk number), noting how far ahead of the consumer the
    reader has got each time it asks for another chunk."""

    def __init__(self, chunks: int, size: int = 10, fail_at: int | None = None) -> None:
        self.n, self.size, self.fail_at = chunks, size, fail_at
        self.consumed = 0
        self.ahead_seen: list[int] = []
        self.asked = [threading.Event() for _ in range(chunks + 1)]

    def chunks(self) -> Iterator[SourceChunk]:
        for k in range(self.n):
            self.ahead_seen.append(k - self.consumed)
            self.asked[k].set()
            if k == self.fail_at:
                raise OSError(f"disk gone at chunk {k}")
            trades = np.zeros(self.size, TRADE_DTYPE)
            trades["sequence"] = k
            yield SourceChunk(trades)


def test_chunks_arrive_in_order_read_ahead_up_to_the_budget() -> None:
    source = CountingSource(12)
    chunks = PrefetchingSource(source, ahead=35).chunks()
    first = next(chunks)
    source.consumed = 1
    # With one chunk taken and held, the reader queues three more (30 trades) and asks for the fifth,
    # which it then holds until there is room.
    assert source.asked[4].wait(timeout=10)
    seen = [int(first.trades["sequence"][0])]
    for chunk in chunks:
        seen.append(int(chunk.trades["sequence"][0]))
        source.consumed += 1
    assert seen == list(range(12))
    # Never more than the budget queued (3 chunks), the one waiting for room and the one the
    # consumer was handed but had not counted yet: not the whole source.
    assert max(source.ahead_seen) <= 5


def test_a_chunk_larger_than_the_budget_still_goes_through() -> None:
    assert sum(len(c.trades) for c in PrefetchingSource(CountingSource(3, size=100), ahead=10).chunks()) == 300


def test_an_error_while_reading_is_raised_where_its_chunk_would_have_arrived() -> None:
    got = []
    with pytest.raises(OSError, match="disk gone at chunk 2"):
        for chunk in PrefetchingSource(CountingSource(5, fail_at=2), ahead=1000).chunks():
            got.append(int(chunk.trades["sequence"][0]))
    assert got == [0, 1]


def test_a_consumer_that_stops_early_lets_the_reader_finish() -> None:
    source = CountingSource(50)
    chunks = PrefetchingSource(source, ahead=20).chunks()
    next(chunks)
    assert source.asked[3].wait(timeout=10)  # the reader is waiting for room
    chunks.close()
    # Joined in close(): no reader left behind, waiting for room that will never come.
    assert not any(t.name == "source-prefetch" and t.is_alive() for t in threading.enumerate())


def test_streams_sharing_a_budget_hold_at_most_it_and_one_chunk_each() -> None:
    budget = ReadAheadBudget(20)
    a, b = CountingSource(6), CountingSource(6)
    from_a, from_b = read_ahead(a.chunks, budget, "a"), read_ahead(b.chunks, budget, "b")
    first_a = next(from_a)  # A's reader fills the budget while nobody takes from it
    assert a.asked[3].wait(timeout=10)
    # B's queue is empty, so its reader may still queue one chunk (a merge may be waiting for
    # exactly that stream), and no more.
    first_b = next(from_b)
    assert b.asked[2].wait(timeout=10)
    with budget.changed:
        assert budget.changed.wait_for(lambda: budget.queued == 30, timeout=10)
    assert max(a.ahead_seen) == 3 and max(b.ahead_seen) == 2
    rest_a, rest_b = list(from_a), list(from_b)  # taking frees room: both run to their end
    assert [int(c.trades["sequence"][0]) for c in [first_a, *rest_a]] == list(range(6))
    assert [int(c.trades["sequence"][0]) for c in [first_b, *rest_b]] == list(range(6))
    assert budget.queued == 0


def test_a_stream_closed_early_gives_its_share_of_the_budget_back() -> None:
    budget = ReadAheadBudget(20)
    a, b = CountingSource(50), CountingSource(50)
    from_a = read_ahead(a.chunks, budget, "a")
    next(from_a)
    assert a.asked[3].wait(timeout=10)  # two chunks queued, the third waiting for room
    from_a.close()
    assert budget.queued == 0
    from_b = read_ahead(b.chunks, budget, "b")
    next(from_b)
    # B now gets the whole budget: two chunks queued, and the reader asking for the fourth.
    assert b.asked[3].wait(timeout=10)
    from_b.close()
    assert budget.queued == 0
