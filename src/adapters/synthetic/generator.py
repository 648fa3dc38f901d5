"""Generate a labelled synthetic trading day: a DBN trades file plus its labels JSON beside it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.files.naming import naming
from adapters.synthetic.dbn_writer import FIXED_PRICE_SCALE, trade_records, trades_metadata, write_dbn
from adapters.synthetic.market import PUBLISHER_ID, InjectedEvent, SyntheticMarket, simulate

DATASET = "XNAS.ITCH"
_DATA_SUFFIXES = (".dbn.zst", ".dbn", ".csv.zst", ".csv")


@dataclass(frozen=True, slots=True)
class GenerationResult:
    path: Path
    labels_path: Path
    market: SyntheticMarket

    @property
    def total_trades(self) -> int:
        return len(self.market.tape)

    @property
    def trades(self) -> np.ndarray:
        """The generated prints as a TRADE_DTYPE batch, in file order."""
        return self.market.trades

    @property
    def events(self) -> tuple[InjectedEvent, ...]:
        return self.market.events

    def labels(self) -> dict[str, Any]:
        return self.market.labels()


def labels_path_for(data_path: str | Path) -> Path:
    """`day.dbn.zst` -> `day.labels.json`, in the same folder."""
    path = Path(data_path)
    stem = next((path.name[: -len(s)] for s in _DATA_SUFFIXES if path.name.lower().endswith(s)), path.stem)
    return path.with_name(f"{stem}.labels.json")


def generate(out_path: str | Path, symbols: int = 20, trades: int = 1_000_000, seed: int = 7,
             date: str = "2025-03-03", events_per_type: int | None = None) -> GenerationResult:
    """Simulate the day, write it as DBN (zstd when the name ends with .zst) and write its labels."""
    market = simulate(symbols=symbols, trades=trades, seed=seed, date=date, events_per_type=events_per_type)
    path = write_market_dbn(out_path, market)
    labels_path = labels_path_for(path)
    partial = labels_path.with_name(labels_path.name + ".partial")
    try:
        with naming(labels_path, via=partial):
            partial.write_text(json.dumps(market.labels(), indent=1) + "\n", encoding="utf-8")
        partial.replace(labels_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return GenerationResult(path, labels_path, market)


def write_market_dbn(out_path: str | Path, market: SyntheticMarket) -> Path:
    tape = market.tape
    records = trade_records(len(tape))
    records["publisher_id"] = PUBLISHER_ID
    records["instrument_id"] = market.instrument_ids[tape["symbol_index"]]
    records["price"] = tape["cents"] * (FIXED_PRICE_SCALE // 100)
    for name in ("ts_event", "ts_recv", "ts_in_delta", "size", "side", "flags", "sequence"):
        records[name] = tape[name]
    instruments = {p.symbol: p.instrument_id for p in market.profiles}
    start, end = int(tape["ts_event"][0]), int(tape["ts_event"][-1]) + 1
    metadata = trades_metadata(DATASET, instruments, market.session.day, start, end)
    return write_dbn(out_path, metadata, records)
