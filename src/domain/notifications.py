"""What is worth telling someone about, and how often: the notifier's policy, pure.

A record (an anomaly or an incident) is sent when its severity is at least `min_severity`, and at
most one per symbol every `per_symbol_ns` of event time: a symbol alerting again within that time
is held back and counted, and the next one sent says how many were. Event time, not the wall
clock, so the same topic read twice makes the same decisions (a catch-up after an outage sends
what a live run would have sent, not everything at once, nor nothing).

What the limit remembers (each symbol's last sent time and held-back count) has a short text form,
`memory()`, that a notifier commits with its offsets and `recall()`s when it takes the partition
again: a restart or a rebalance then decides as one uninterrupted run would, and the counts held
back before it are still told.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any

from domain.incidents import Incident
from domain.model import Anomaly

SEVERITIES = ("low", "medium", "high")
MEMORY_FORMAT = 1
# Kafka keeps at most `offset.metadata.max.bytes` (4,096 by default) with a committed offset.
MEMORY_LIMIT = 3_000
# A symbol last sent more than the limit's window and this much before the newest record sent (and
# nothing held back since) is not kept: records come in event-time order but for the minutes a rate
# episode or an incident is reported after it starts, so it can no longer hold one back.
FORGET_AFTER_NS = 600_000_000_000


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str  # "anomaly" or "incident"
    id: str
    symbol: str
    ts_event: int  # the anomaly's print, or the incident's start
    ts_local: str
    session: str
    score: float
    severity: str
    detectors: tuple[str, ...]
    text: str  # the reason (an incident: its headline)
    held_back: int  # this symbol's records held back since the last one sent
    record: dict[str, Any]  # the anomaly or incident as on its topic, without its tape

    @property
    def title(self) -> str:
        what = "incident" if self.kind == "incident" else self.detectors[0]
        return f"{self.symbol} {what} {self.score:.2f} ({self.severity})"


class NotificationPolicy:
    def __init__(self, min_severity: str = "medium", per_symbol_ns: int = 300_000_000_000) -> None:
        if min_severity not in SEVERITIES:
            raise ValueError(f"min_severity is one of {', '.join(SEVERITIES)}, not {min_severity!r}")
        if per_symbol_ns < 0:
            raise ValueError("per_symbol_ns is 0 (no limit) or more")
        self.min_rank = SEVERITIES.index(min_severity)
        self.per_symbol_ns = per_symbol_ns
        self._last_sent: dict[str, int] = {}  # symbol -> event time of the last record sent
        self._held: dict[str, int] = {}  # symbol -> records held back since its last one sent

    def admit(self, record: Anomaly | Incident) -> Notification | None:
        """The notification to send for `record`, or None (under the severity bar, or held back)."""
        return self.decide(record)[1]

    def decide(self, record: Anomaly | Incident) -> tuple[str, Notification | None]:
        """("send", its notification), ("below_severity", None) or ("held_back", None)."""
        rank = SEVERITIES.index(record.severity) if record.severity in SEVERITIES else -1
        if rank < self.min_rank:
            return "below_severity", None
        ts = record.ts_event if isinstance(record, Anomaly) else record.start_ns
        last = self._last_sent.get(record.symbol)
        if last is not None and abs(ts - last) < self.per_symbol_ns:
            self._held[record.symbol] = self._held.get(record.symbol, 0) + 1
            return "held_back", None
        self._last_sent[record.symbol] = ts
        held = self._held.pop(record.symbol, 0)
        data = record.to_dict()
        for tape in ("context", "before", "after"):
            data.pop(tape, None)
        if isinstance(record, Anomaly):
            return "send", Notification("anomaly", record.id, record.symbol, ts, record.ts_local, record.session,
                                        record.score, record.severity, (record.detector,), record.reason, held, data)
        return "send", Notification("incident", record.id, record.symbol, ts, record.ts_local, record.session,
                                    record.score, record.severity, record.detectors, record.headline, held, data)

    def memory(self) -> tuple[str, int]:
        """What the per-symbol limit remembers, as at most MEMORY_LIMIT ASCII characters, and how many
        symbols had to be left out to fit (the longest ago sent first). Symbols sent more than
        FORGET_AFTER_NS before the newest with nothing held back since are not kept."""
        if not self._last_sent:  # (a symbol is held back only after one of its records was sent)
            return "", 0
        newest = max(self._last_sent.values())
        oldest_kept = newest - self.per_symbol_ns - FORGET_AFTER_NS
        keep = sorted((s for s, at in self._last_sent.items() if self._held.get(s) or at >= oldest_kept),
                      key=lambda s: (self._last_sent[s], s), reverse=True)
        text = self._encode(keep, newest)
        if len(text) <= MEMORY_LIMIT:
            return text, 0
        fits, over = 0, len(keep)  # the most recent `fits` fit, `over` do not
        while over - fits > 1:
            middle = (fits + over) // 2
            fits, over = (middle, over) if len(self._encode(keep[:middle], newest)) <= MEMORY_LIMIT else (fits, middle)
        return self._encode(keep[:fits], newest), len(keep) - fits

    def _encode(self, symbols: list[str], newest: int) -> str:
        # Times relative to the newest (small numbers), compressed: a few hundred symbols fit.
        body = {"t": newest, "s": [[s, newest - self._last_sent[s], self._held.get(s, 0)] for s in symbols]}
        raw = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)
        return f"np{MEMORY_FORMAT}:" + base64.b64encode(raw).decode()

    def recall(self, text: str) -> None:
        """Take back what `memory()` gave (replacing what this policy holds; "" is nothing); ValueError
        says why a text cannot be read (another format, or not one of ours), and nothing is changed."""
        if not text:
            self._last_sent, self._held = {}, {}
            return
        prefix = f"np{MEMORY_FORMAT}:"
        if not text.startswith(prefix):
            raise ValueError(f"not a notifier memory of format {MEMORY_FORMAT}: {text[:20]!r}")
        try:
            body = json.loads(zlib.decompress(base64.b64decode(text[len(prefix):], validate=True)))
            newest = int(body["t"])
            entries = [(str(s), newest - int(ago), int(held)) for s, ago, held in body["s"]]
        except (ValueError, TypeError, KeyError, zlib.error) as exc:
            raise ValueError(f"notifier memory does not decode: {exc}") from None
        self._last_sent = {s: at for s, at, _ in entries}
        self._held = {s: held for s, _, held in entries if held}
