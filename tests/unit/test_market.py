"""MarketBatch keeps its grouped columns and its arrival-order columns in step."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from builders import calm_flow

from domain.market import MarketBatch, TradeColumns
from domain.symbols import factorize


def _interleaved() -> np.ndarray:
    trades = np.concatenate([calm_flow(50, symbol=symbol, seed=k) for k, symbol in enumerate(["AAA", "BBB", "CCC"])])
    return trades[np.argsort(trades["ts_event"], kind="stable")]


def _assert_in_step(batch: MarketBatch) -> None:
    for f in fields(TradeColumns):
        np.testing.assert_array_equal(getattr(batch.arrived, f.name), getattr(batch.columns, f.name)[batch.arrival])
    # Arrival order is the records' order; grouped order keeps each symbol's trades in arrival order.
    assert np.all(np.diff(batch.index[batch.arrival]) > 0)
    np.testing.assert_array_equal(batch.ts, batch.rows["ts_event"][batch.index])
    for code in range(len(batch.symbols)):
        assert np.all(np.diff(batch.index[batch.slot == code]) > 0)


def test_grouped_and_arrival_columns_describe_the_same_trades() -> None:
    trades = _interleaved()
    codes, symbols = factorize(trades["symbol"])
    auction = trades["size"] > 150
    batch = MarketBatch.of(trades, tuple(symbols), codes, auction, group=True)
    assert np.all(np.diff(batch.slot) >= 0)  # grouped
    np.testing.assert_array_equal(batch.arrived.slot, codes)
    np.testing.assert_array_equal(batch.arrived.auction, auction)
    _assert_in_step(batch)

    keep = np.ones(len(batch), bool)
    keep[::7] = False
    kept = batch.select(keep)
    assert len(kept) == keep.sum() == len(kept.arrived.ts)
    _assert_in_step(kept)

    marked = kept.with_auctions(kept.size > 100)
    _assert_in_step(marked)


def test_a_batch_in_arrival_order_shares_its_columns() -> None:
    trades = calm_flow(20, symbol="AAA")
    codes, symbols = factorize(trades["symbol"])
    batch = MarketBatch.of(trades, tuple(symbols), codes, np.zeros(len(trades), bool))
    assert batch.arrived is batch.columns
    np.testing.assert_array_equal(batch.arrival, np.arange(20))
    kept = batch.select(np.arange(20) % 3 > 0)
    assert kept.arrived is kept.columns
    np.testing.assert_array_equal(kept.ts, trades["ts_event"][np.arange(20) % 3 > 0])


def test_refused_trades_leave_the_column_layout_as_it_was() -> None:
    """Compiled kernels are specialised on array layout: a batch with refused trades must hand them
    columns laid out as any other batch does, or its first refusal would wait for a compile."""
    trades = _interleaved()
    codes, symbols = factorize(trades["symbol"])
    for group in (False, True):
        batch = MarketBatch.of(trades, tuple(symbols), codes, np.zeros(len(trades), bool), group=group)
        kept = batch.select(np.arange(len(batch)) % 5 > 0)
        for f in fields(TradeColumns):
            for before, after in ((batch.columns, kept.columns), (batch.arrived, kept.arrived)):
                a, b = getattr(before, f.name), getattr(after, f.name)
                assert (a.strides, a.flags.c_contiguous) == (b.strides, b.flags.c_contiguous), f.name
