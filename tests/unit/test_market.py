"""MarketBatch keeps its grouped columns and its arrival-order columns in step."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from builders import calm_flow

from domain.market import MarketBatch, TradeColumns
from domain.symbols import factorize, group_by_code


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
    batch = MarketBatch.of(trades, tuple(symbols), codes, auction, order=group_by_code(codes, len(symbols)))
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
