"""Static group membership without a broker: the setting reaches the worker's consumer, heartbeats
name the instance, and a worker whose instance another process took stops with one line."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from aiokafka.errors import for_code
from aiokafka.protocol.group import HeartbeatRequest
from builders import until

import adapters.faust.app as app_module
import adapters.faust.membership as membership
from adapters.faust.app import create_app
from adapters.faust.indexer import create_indexer_app
from entrypoints.container import build_container
from entrypoints.settings import load_settings


def worker_app(settings: Any) -> Any:
    container = build_container()
    return create_app(settings, lambda symbols, pools, tapes: container.streaming_detect(
        states=container.table_state_store(table=symbols), pool_states=container.table_pool_state_store(table=pools),
        tapes=container.table_tape_store(table=tapes)))


@pytest.mark.asyncio
@pytest.mark.parametrize(("instance", "timeout", "expected_timeout"), [
    ("", None, 10.0), ("worker-a", None, 30.0), ("worker-a", "12", 12.0), ("", "45", 45.0)],
    ids=["dynamic", "static-outlasts-a-restart", "static-as-set", "dynamic-as-set"])
async def test_the_instance_id_reaches_the_workers_consumer_with_a_session_to_outlast_a_restart(
        monkeypatch, instance: str, timeout: str | None, expected_timeout: float) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STOCKANOMALY_GROUP_INSTANCE_ID", instance)
    if timeout is not None:
        monkeypatch.setenv("STOCKANOMALY_KAFKA_SESSION_TIMEOUT", timeout)
    app = worker_app(load_settings(store="memory://", app_id="unit-static").streaming())
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await consumer.stop()  # never started: only its client's resources to let go
    assert consumer._group_instance_id == (instance or None)
    assert consumer._session_timeout_ms == expected_timeout * 1000
    # Faust's assignor names a member by its URL and refuses an assignment made for another: a static
    # member is handed the one made for its instance, whatever host or port it restarts on.
    assert (str(app.conf.canonical_url) == "http://worker-a") == bool(instance)
    # the indexer, never a static member, keeps a dynamic member's session whatever the worker's id
    indexer = create_indexer_app(load_settings(store="memory://", app_id="unit-static").streaming(),
                                 sink=None)  # type: ignore[arg-type]
    consumer = indexer.consumer._thread._create_worker_consumer(indexer.transport)
    await consumer.stop()
    assert (consumer._group_instance_id, consumer._session_timeout_ms) == (None, float(timeout or 10) * 1000)


@pytest.mark.parametrize("value", ["worker a", "a/b", "..", "w" * 250])
def test_an_instance_id_kafka_would_refuse_is_refused_in_one_line(monkeypatch, value: str) -> None:  # type: ignore[no-untyped-def]
    from domain.errors import ConfigError

    monkeypatch.setenv("STOCKANOMALY_GROUP_INSTANCE_ID", value)
    with pytest.raises(ConfigError, match="^STOCKANOMALY_GROUP_INSTANCE_ID: an instance id is 1 to 249 of the"):
        build_container()


@pytest.mark.parametrize(("broker", "version"), [((0, 4), 3), ((0, 1), 1)], ids=["kafka-2.3+", "older"])
def test_a_heartbeat_names_the_instance_where_the_broker_takes_it(broker: tuple[int, int], version: int) -> None:
    request = membership.StaticHeartbeatRequest("group", 7, "member-1", "worker-a").prepare({12: broker})
    assert request.API_VERSION == version
    assert request.to_object() == {"group": "group", "generation_id": 7, "member_id": "member-1",
                                   **({"group_instance_id": "worker-a"} if version == 3 else {})}


@pytest.mark.asyncio
async def test_a_fenced_instance_is_reported_once_and_never_for_a_dynamic_member(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sent: list[Any] = []

    async def broker(coordinator: Any, request: Any) -> Any:
        sent.append(request.prepare({12: (0, 4)}))
        return SimpleNamespace(error_code=82)

    monkeypatch.setattr(membership, "_original_send_req", broker)
    membership.heartbeat_as_instance()
    assert for_code(82) is membership.FencedInstanceIdError  # aiokafka's UnknownError before
    fenced: list[str] = []
    membership.on_fenced("group", "worker-a", lambda: fenced.append("worker-a"))
    static = SimpleNamespace(_group_instance_id="worker-a", group_id="group")
    dynamic = SimpleNamespace(_group_instance_id=None, group_id="group")
    await membership._send_req(static, HeartbeatRequest("group", 7, "member-1"))  # type: ignore[arg-type]
    await membership._send_req(dynamic, HeartbeatRequest("group", 7, "member-2"))  # type: ignore[arg-type]
    assert [r.API_VERSION for r in sent] == [3, 1] and sent[0].group_instance_id == "worker-a"
    assert fenced == ["worker-a"]


@pytest.mark.asyncio
async def test_a_worker_whose_instance_another_process_took_stops_with_one_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STOCKANOMALY_GROUP_INSTANCE_ID", "worker-a")
    app = worker_app(load_settings(store="memory://", app_id="unit-fenced").streaming())
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app.crash = crash  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        # The module's logger may have been bound (and cached) by an earlier test's configuration.
        monkeypatch.setattr(app_module, "log", structlog.get_logger())
        for _ in range(3):  # the heartbeat, then a JoinGroup and a SyncGroup may each say so
            membership._on_fenced[("unit-fenced", "worker-a")]()
        await until(lambda: crashes)
        await asyncio.sleep(0.05)
    assert [type(c) for c in crashes] == [membership.FencedInstanceIdError]
    lines = [line for line in logs if line["event"] == "group_instance_fenced"]
    assert len(lines) == 1 and lines[0]["instance_id"] == "worker-a" and lines[0]["log_level"] == "error"
