"""Write trade batches as real Databento files: DBN via databento_dbn metadata + records, CSV exports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import zstandard

HEADER = "ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,sequence,symbol"
UNDEF_PRICE = np.iinfo(np.int64).max
_STRUCTS = {"trades": dbn.TradeMsg, "mbp-1": dbn.MBP1Msg}
_DAY = 86_400_000_000_000


def fixed_prices(trades: np.ndarray) -> np.ndarray:
    undefined = np.isnan(trades["price"])
    fixed = np.round(np.where(undefined, 0.0, trades["price"]) * 1e9).astype(np.int64)
    fixed[undefined] = UNDEF_PRICE
    return fixed


def mappings_of(trades: np.ndarray) -> dict[str, list[tuple[dt.date, dt.date, int]]]:
    """Each (symbol, instrument_id) mapped over the UTC days its trades span."""
    out: dict[str, list[tuple[dt.date, dt.date, int]]] = {}
    for symbol, iid in sorted({(str(s), int(i)) for s, i in zip(trades["symbol"], trades["instrument_id"])}):
        ts = trades["ts_recv"][(trades["symbol"] == symbol) & (trades["instrument_id"] == iid)]
        first, last = (dt.date(1970, 1, 1) + dt.timedelta(days=int(t // _DAY)) for t in (ts.min(), ts.max()))
        out.setdefault(symbol, []).append((first, last + dt.timedelta(days=1), iid))
    return out


def dbn_bytes(trades: np.ndarray, schema: str = "trades", actions: np.ndarray | None = None,
              mappings: dict[str, list[tuple[dt.date, dt.date, int]]] | None = None) -> bytes:
    mappings = mappings_of(trades) if mappings is None else mappings
    metadata = dbn.Metadata(
        dataset="XNAS.ITCH", schema=dbn.Schema(schema), stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        start=int(trades["ts_event"].min()) if len(trades) else 0,
        end=int(trades["ts_event"].max()) + 1 if len(trades) else 1,
        symbols=sorted(mappings),
        mappings=[SimpleNamespace(raw_symbol=symbol, intervals=[
            SimpleNamespace(start_date=a, end_date=b, symbol=str(iid)) for a, b, iid in intervals])
            for symbol, intervals in mappings.items()],
    )
    struct = _STRUCTS[schema]
    records = np.zeros(len(trades), np.dtype(struct._dtypes))
    records["length"] = records.itemsize // 4
    records["rtype"] = int(dbn.RType.from_schema(dbn.Schema(schema)))
    for name in ("publisher_id", "instrument_id", "ts_event", "ts_recv", "size", "side", "flags", "sequence"):
        records[name] = trades[name]
    records["price"] = fixed_prices(trades)
    records["action"] = b"T" if actions is None else actions
    return metadata.encode() + records.tobytes()


def write_dbn(path: Path, trades: np.ndarray, **kwargs: object) -> Path:
    data = dbn_bytes(trades, **kwargs)  # type: ignore[arg-type]
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(data)
                     if path.name.endswith(".zst") else data)
    return path


def csv_lines(trades: np.ndarray, pretty_px: bool = True, pretty_ts: bool = True,
              actions: np.ndarray | None = None) -> list[str]:
    def ts(column: str) -> list[str]:
        if not pretty_ts:
            return [str(int(v)) for v in trades[column]]
        return [s + "Z" for s in np.datetime_as_string(trades[column].astype("datetime64[ns]"), unit="ns")]

    prices = ([f"{p:.9f}" for p in trades["price"]] if pretty_px else [str(p) for p in fixed_prices(trades)])
    acts = ["T"] * len(trades) if actions is None else [a.decode() for a in actions]
    return [
        f"{recv},{event},0,{t['publisher_id']},{t['instrument_id']},{act},{t['side'].decode()},0,{price},"
        f"{t['size']},{t['flags']},0,{t['sequence']},{t['symbol']}"
        for t, recv, event, price, act in zip(trades, ts("ts_recv"), ts("ts_event"), prices, acts)
    ]


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    data = ("\n".join([header, *lines]) + "\n").encode()
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(data)
                     if path.name.endswith(".zst") else data)
    return path
