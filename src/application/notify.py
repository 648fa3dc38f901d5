"""Use case: send the records that matter (domain.notifications) to every channel.

A record is done once every channel acknowledged it or refused it for good; the caller commits its
offset only then, so a notifier stopped mid-way sends it again on restart (at least once: a
receiver may see a notification twice, never miss one). A refusal is logged and counted, not
retried: the receiver said no.

Records come in streams (a topic's partitions), each with a policy of its own: a stream's policy
memory is committed with its offsets and recalled by whichever notifier reads the stream next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from domain.incidents import Incident
from domain.model import Anomaly
from domain.notifications import Notification, NotificationPolicy
from domain.ports import NotificationChannel, NotificationRefused


@dataclass
class NotifyOutcome:
    sent: list[Notification] = field(default_factory=list)
    below_severity: int = 0
    held_back: int = 0  # by the per-symbol limit (counted into that symbol's next message)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, record id, why)

    @property
    def skipped(self) -> int:
        return self.below_severity + self.held_back


class Notify:
    def __init__(self, policy: Callable[[], NotificationPolicy], channels: Sequence[NotificationChannel]) -> None:
        self.new_policy = policy
        self.channels = list(channels)
        self._policies: dict[int, NotificationPolicy] = {}

    def policy(self, stream: int = 0) -> NotificationPolicy:
        if stream not in self._policies:
            self._policies[stream] = self.new_policy()
        return self._policies[stream]

    def recall(self, stream: int, memory: str) -> None:
        """Start `stream` from what its policy remembered (ValueError: unreadable, started afresh)."""
        self._policies[stream] = policy = self.new_policy()
        policy.recall(memory)

    def forget(self, stream: int) -> None:
        self._policies.pop(stream, None)

    async def __call__(self, records: Sequence[Anomaly | Incident], stream: int = 0) -> NotifyOutcome:
        policy = self.policy(stream)
        outcome = NotifyOutcome()
        for record in records:
            decision, notification = policy.decide(record)
            if notification is None:
                if decision == "held_back":
                    outcome.held_back += 1
                else:
                    outcome.below_severity += 1
                continue
            refused = len(outcome.refused)
            for channel in self.channels:
                try:
                    await channel.send(notification)
                except NotificationRefused as exc:
                    outcome.refused.append((channel.name, notification.id, str(exc)))
            if len(outcome.refused) == refused:  # sent: every webhook took it (refusals are counted apart)
                outcome.sent.append(notification)
        return outcome
