"""What is worth telling someone about, and how often: the notifier's policy, pure.

A record (an anomaly or an incident) is sent when its severity is at least `min_severity`, and at
most one per symbol every `per_symbol_ns` of event time: a symbol alerting again within that time
is held back and counted, and the next one sent says how many were. Event time, not the wall
clock, so the same topic read twice makes the same decisions (a catch-up after an outage sends
what a live run would have sent, not everything at once, nor nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.incidents import Incident
from domain.model import Anomaly

SEVERITIES = ("low", "medium", "high")


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
        self._held: dict[str, int] = {}

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
