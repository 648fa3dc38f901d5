"""Each detector fires on what it should, stays quiet on calm flow, waits for warm-up, stays bounded."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from builders import S, calm_flow, insert, run_detector, symbol_batch

from domain.detectors import (HighVolumeDetector, IsolationForestDetector, PriceChangeDetector,
                              TradeBurstDetector, VolumeSurgeDetector, VwapDeviationDetector)
from domain.model import TRADE_DTYPE

ALL = [HighVolumeDetector, PriceChangeDetector, IsolationForestDetector, TradeBurstDetector,
       VolumeSurgeDetector, VwapDeviationDetector]


def one_trade_like(flow: np.ndarray, at: int, **values: object) -> np.ndarray:
    extra = flow[at:at + 1].copy()
    extra["ts_event"] += 1
    for k, v in values.items():
        extra[k] = v
    return extra


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_stays_quiet_on_calm_flow(cls: type) -> None:
    _, found = run_detector(cls(), calm_flow(30_000))
    assert found == []


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_state_size_does_not_grow_with_history(cls: type) -> None:
    flow = calm_flow(60_000)
    short, _ = run_detector(cls(), flow[:20_000])
    long, _ = run_detector(cls(), flow)
    assert len(pickle.dumps(long)) <= len(pickle.dumps(short)) * 1.1 + 512


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_detect_does_not_mutate_the_state_it_is_given(cls: type) -> None:
    flow = calm_flow(5_000)
    det = cls()
    state, _ = run_detector(det, flow[:4_000])
    before = pickle.dumps(state)
    det.detect(symbol_batch(flow[4_000:]), state)
    assert pickle.dumps(state) == before


def test_high_volume_flags_block_trade_after_warmup() -> None:
    flow = calm_flow(20_000)
    block = one_trade_like(flow, 15_000, size=200_000)
    _, found = run_detector(HighVolumeDetector(), insert(flow, block))
    assert [a.size for a in found] == [200_000]
    assert "p99.9" in found[0].reason and "200,000" in found[0].reason


def test_high_volume_is_silent_during_warmup() -> None:
    flow = calm_flow(2_000)
    block = one_trade_like(flow, 100, size=200_000)
    _, found = run_detector(HighVolumeDetector(warmup_trades=1000), insert(flow, block))
    assert found == []


def test_high_volume_ignores_auction_cross() -> None:
    flow = calm_flow(20_000)
    batch = symbol_batch(flow)
    det = HighVolumeDetector()
    state, _ = det.detect(batch, det.initial_state())
    cross = one_trade_like(flow, 19_999, size=5_000_000, side=b"N")
    _, found = det.detect(symbol_batch(cross, auction=np.array([True])), state)
    assert found == []


def test_high_volume_uses_calibrated_threshold_without_warmup() -> None:
    flow = calm_flow(200)
    big = one_trade_like(flow, 50, size=5_000)
    _, found = run_detector(HighVolumeDetector(calibrated={"ACME": 4_000}), insert(flow, big))
    assert [a.size for a in found] == [5_000]
    assert "calibrated" in found[0].reason


def test_price_change_flags_a_bad_print_once_and_not_its_reversal() -> None:
    flow = calm_flow(20_000)
    spike = one_trade_like(flow, 15_000, price=flow["price"][15_000] * 1.05)
    merged = insert(flow, spike)
    _, found = run_detector(PriceChangeDetector(), merged)
    assert len(found) == 1
    assert found[0].price == pytest.approx(spike["price"][0])
    assert "+" in found[0].reason


def test_price_change_flags_a_level_shift_once() -> None:
    flow = calm_flow(20_000)
    flow["price"][15_000:] = np.round(flow["price"][15_000:] * 0.95, 2)
    _, found = run_detector(PriceChangeDetector(), flow)
    assert len(found) == 1 and found[0].ts_event == flow["ts_event"][15_000]


def test_price_change_threshold_adapts_to_volatility() -> None:
    calm = calm_flow(20_000, tick_sigma=2e-4)
    wild = calm_flow(20_000, tick_sigma=2e-3)
    calm_state, _ = run_detector(PriceChangeDetector(), calm)
    wild_state, _ = run_detector(PriceChangeDetector(), wild)
    assert wild_state.threshold > 3 * calm_state.threshold


def burst_of(flow: np.ndarray, at: int, n: int, within_ns: int) -> np.ndarray:
    extra = np.repeat(flow[at:at + 1], n)
    extra["ts_event"] = flow["ts_event"][at] + np.linspace(1, within_ns, n).astype(np.int64)
    return extra


def test_trade_burst_fires_once_per_burst() -> None:
    flow = calm_flow(20_000)
    merged = insert(flow, burst_of(flow, 15_000, 300, S // 2))
    _, found = run_detector(TradeBurstDetector(), merged)
    assert len(found) == 1
    assert "trades in 1s" in found[0].reason


def test_volume_surge_fires_on_a_minute_of_heavy_volume() -> None:
    flow = calm_flow(20_000)
    t = flow["ts_event"]
    minute = (t >= t[15_000]) & (t < t[15_000] + 60 * S)
    flow["size"][minute] *= 30
    _, found = run_detector(VolumeSurgeDetector(), flow)
    assert len(found) == 1
    assert flow["ts_event"][15_000] <= found[0].ts_event < flow["ts_event"][15_000] + 60 * S


def test_vwap_deviation_catches_a_ramp_made_of_small_ticks() -> None:
    flow = calm_flow(20_000, tick_sigma=5e-5)  # about NVDA's: bars stray ~0.1% from their VWAP
    t = flow["ts_event"]
    start = t[15_000]
    ramp = np.clip((t - start) / (60 * S), 0, 1) * 0.06  # +6% over a minute, then holds
    flow["price"] = np.round(flow["price"] * np.exp(ramp), 2)
    _, price_found = run_detector(PriceChangeDetector(), flow)
    _, found = run_detector(VwapDeviationDetector(), flow)
    assert price_found == []
    assert len(found) == 1 and start < found[0].ts_event < start + 60 * S


def test_isolation_forest_flags_a_jointly_unusual_trade() -> None:
    flow = calm_flow(20_000)
    odd = one_trade_like(flow, 15_000, size=int(np.quantile(flow["size"], 0.999)),
                         price=round(flow["price"][15_000] * 1.004, 2))
    _, found = run_detector(IsolationForestDetector(), insert(flow, odd))
    assert [a.ts_event for a in found] == [int(odd["ts_event"][0])]
    assert "jointly unusual" in found[0].reason


def test_isolation_forest_is_reproducible_and_refits_rarely() -> None:
    flow = calm_flow(60_000)
    det = IsolationForestDetector(refit_every=20_000)
    state, _ = run_detector(det, flow, chunk=5_000)
    assert state.generation == 3  # the first fit after warm-up, then every 20,000 trades
    assert det.refits == 3
    again, _ = run_detector(IsolationForestDetector(refit_every=20_000), flow, chunk=7_000)
    assert np.array_equal(again.training, state.training)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_results_do_not_depend_on_batch_boundaries(cls: type) -> None:
    flow = calm_flow(30_000)
    extras = [one_trade_like(flow, 12_000, size=300_000), burst_of(flow, 20_000, 300, S // 2),
              one_trade_like(flow, 25_000, price=flow["price"][25_000] * 1.06)]
    merged = insert(flow, np.concatenate(extras).astype(TRADE_DTYPE))
    _, whole = run_detector(cls(), merged)
    _, pieces = run_detector(cls(), merged, chunk=997)
    assert [a.id for a in pieces] == [a.id for a in whole]
