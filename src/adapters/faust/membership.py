"""Static group membership (KIP-345) where aiokafka 0.14 stops short: heartbeats that name the
instance, and a worker whose instance id another process has taken stopping with one line.

aiokafka sends JoinGroup and SyncGroup with the `group_instance_id`, and skips the LeaveGroup when
a static member stops, but its heartbeats (v0/v1) carry only the member id. When a second process
joins with the same instance id, the broker hands it the first one's member slot and partitions
without a rebalance; the first one's next heartbeat then gets UNKNOWN_MEMBER_ID, on which aiokafka
rejoins with a blank member id and the same instance id, taking the slot back: the two take it from
each other every few seconds, each believing it owns the same partitions. A heartbeat that names
the instance (v3, Kafka 2.3+) gets FENCED_INSTANCE_ID instead, as the Java consumer's does, and the
Java consumer treats that as fatal. aiokafka has no class for error 82 (it raises an untyped
KafkaError: aio-libs/aiokafka#1186); here the worker is told, and stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import BrokerResponseError, kafka_errors
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.group import HeartbeatRequest, HeartbeatRequest_v0, HeartbeatRequest_v1
from aiokafka.protocol.types import Int16, Int32, Schema, String


class FencedInstanceIdError(BrokerResponseError):
    errno = 82
    message = "FENCED_INSTANCE_ID"
    description = ("The broker rejected this static consumer since another consumer with the same "
                   "group.instance.id has registered with a different member.id.")


class HeartbeatResponse_v3(Response):  # noqa: N801 - aiokafka's naming of protocol versions
    API_KEY = 12
    API_VERSION = 3
    SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16))


class HeartbeatRequest_v3(RequestStruct):  # noqa: N801
    API_KEY = 12
    API_VERSION = 3
    RESPONSE_TYPE = HeartbeatResponse_v3
    SCHEMA = Schema(("group", String("utf-8")), ("generation_id", Int32), ("member_id", String("utf-8")),
                    ("group_instance_id", String("utf-8")))


class StaticHeartbeatRequest(Request[HeartbeatRequest_v0 | HeartbeatRequest_v1 | HeartbeatRequest_v3]):
    """A heartbeat with the instance id, at v3 where the broker has it (else as aiokafka's own)."""

    API_KEY = 12

    def __init__(self, group: str, generation_id: int, member_id: str, group_instance_id: str) -> None:
        self.fields = (group, generation_id, member_id)
        self.group_instance_id = group_instance_id

    def build(self, request_struct_class: type[Any]) -> Any:
        if request_struct_class.API_VERSION >= 3:
            return request_struct_class(*self.fields, self.group_instance_id)
        return request_struct_class(*self.fields)


# (group id, instance id) -> what to do when the broker says another process holds the instance
_on_fenced: dict[tuple[str, str], Callable[[], None]] = {}
_original_send_req = GroupCoordinator._send_req


async def _send_req(self: GroupCoordinator, request: Any) -> Any:
    instance = self._group_instance_id
    if instance is not None and isinstance(request, HeartbeatRequest):
        request = StaticHeartbeatRequest(request._group, request._generation_id, request._member_id, instance)
    response = await _original_send_req(self, request)
    # Heartbeat, JoinGroup, SyncGroup and OffsetCommit answers all have an error_code.
    if instance is not None and getattr(response, "error_code", None) == FencedInstanceIdError.errno:
        fenced = _on_fenced.get((self.group_id, instance))
        if fenced is not None:
            fenced()
    return response


def heartbeat_as_instance() -> None:
    """Make aiokafka's group coordinator send a static member's heartbeats with its instance id, and
    name error 82 (idempotent)."""
    kafka_errors.setdefault(FencedInstanceIdError.errno, FencedInstanceIdError)
    GroupCoordinator._send_req = _send_req


def on_fenced(group_id: str, instance_id: str, callback: Callable[[], None]) -> None:
    """Call `callback` (on the consumer's own thread) when the broker answers the member `instance_id`
    of `group_id` with FENCED_INSTANCE_ID: another process joined the group as that instance."""
    _on_fenced[(group_id, instance_id)] = callback
