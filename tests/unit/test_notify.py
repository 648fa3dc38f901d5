"""The notifier: which anomalies are worth a message and how often, the bodies it posts, and a
webhook retried while its receiver is down (a real HTTP server on loopback), never given up on."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import structlog
from aiohttp import web
from builders import T0, S
from click.testing import CliRunner

from adapters.webhook import WebhookChannel, json_body, slack_body
from application.notify import Notify
from domain.model import Anomaly, Print
from domain.notifications import MEMORY_LIMIT, NotificationPolicy
from domain.ports import NotificationRefused
from entrypoints.cli import main


def anomaly(symbol: str = "NVDA", at_s: float = 0.0, score: float = 2.5, sequence: int = 1) -> Anomaly:
    a = Anomaly.of_print("high_volume", symbol, T0 + int(at_s * S), 113.6, 30_000, 2, 7, sequence, score,
                         "size 30,000 is 8.7x NVDA's p99.9 of 3,444 (alert at 8x)")
    return Anomaly(**{**a.to_dict(), "session": "regular", "ts_local": "2025-03-04T10:00:00.000000000-05:00",
                      "context": (Print(T0 - 1, 113.5, 100, "B"),)})


def test_only_anomalies_at_or_over_the_severity_bar_are_sent() -> None:
    policy = NotificationPolicy("medium", per_symbol_ns=0)
    sent = [policy.admit(anomaly(score=s, sequence=k)) for k, s in enumerate((1.2, 2.0, 4.5))]
    assert [n.severity if n else None for n in sent] == [None, "medium", "high"]


def test_one_message_per_symbol_per_window_of_event_time_the_rest_counted_into_the_next() -> None:
    policy = NotificationPolicy("low", per_symbol_ns=300 * S)
    decisions = [policy.admit(anomaly("NVDA", t, sequence=k)) for k, t in enumerate((0, 60, 120, 299.9, 300))]
    assert [d is not None for d in decisions] == [True, False, False, False, True]
    assert decisions[0].held_back == 0 and decisions[4].held_back == 3  # type: ignore[union-attr]
    assert policy.admit(anomaly("AAPL", 61, sequence=9)) is not None  # another symbol is its own


def test_the_slack_body_reads_as_a_message_and_the_json_body_carries_the_record_without_its_tape() -> None:
    policy = NotificationPolicy("low", per_symbol_ns=300 * S)
    policy.admit(anomaly(at_s=0))
    policy.admit(anomaly(at_s=10, sequence=2))
    n = policy.admit(anomaly(at_s=400, sequence=3))
    assert n is not None
    text = slack_body(n)["text"]
    assert text.startswith("*NVDA high_volume 2.50 (medium)* 2025-03-04 10:00:00.000 regular\n")
    assert "size 30,000 is 8.7x NVDA's p99.9" in text and n.id in text and "1 more for NVDA held back" in text
    body = json_body(n)
    assert body["anomaly"]["id"] == n.id and "context" not in body["anomaly"] and body["held_back"] == 1


class Receiver:
    """An HTTP server on loopback that answers each POST with the next status of `script` (then 200),
    and `reply` as its body when given; a 3xx points at /elsewhere, which records the method of each
    request that follows it there. `answered`: the statuses it gave, in order."""

    def __init__(self, script: list[int], port: int = 0, reply: bytes | None = None) -> None:
        self.script, self.port, self.bodies = list(script), port, []  # type: ignore[var-annotated]
        self.reply = reply
        self.requests = 0
        self.answered: list[int] = []
        self.redirected: list[str] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        status = self.script.pop(0) if self.script else 200
        self.answered.append(status)
        if status == 200:
            self.bodies.append(await request.json())
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "/elsewhere"})
        if self.reply is not None:
            return web.Response(status=status, body=self.reply, content_type="text/plain")
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.redirected.append(request.method)
        return web.Response(text="ok")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        app.router.add_route("*", "/elsewhere", self.elsewhere)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notification() -> Any:
    return NotificationPolicy("low", 0).admit(anomaly())


def test_a_webhook_answering_503_is_retried_until_it_takes_the_message_once() -> None:
    async def go() -> tuple[Receiver, WebhookChannel]:
        receiver = Receiver([503, 429, 200])
        channel = WebhookChannel(await receiver.start(), "json", first_wait_s=0.01, max_wait_s=0.05)
        await channel.send(notification())
        await channel.close()
        await receiver.stop()
        return receiver, channel

    receiver, channel = asyncio.run(go())
    assert receiver.requests == 3 and channel.retries == 2
    assert [b["id"] for b in receiver.bodies] == [notification().id]


def test_a_redirect_is_a_refusal_not_a_delivery() -> None:
    """aiohttp follows a 301/302 by sending a GET without the body: the target answered 200 and the
    message counted as sent (an http -> https redirect lost every one, committed)."""
    async def go() -> Receiver:
        receiver = Receiver([301])
        channel = WebhookChannel(await receiver.start(), "json", first_wait_s=0.01)
        try:
            with pytest.raises(NotificationRefused, match="HTTP 301, a redirect to /elsewhere: not followed"):
                await channel.send(notification())
        finally:
            await channel.close()
            await receiver.stop()
        return receiver

    assert asyncio.run(go()).redirected == []


def test_a_refusal_for_good_is_not_retried() -> None:
    async def go() -> Receiver:
        receiver = Receiver([400])
        channel = WebhookChannel(await receiver.start(), "slack", first_wait_s=0.01)
        try:
            with pytest.raises(NotificationRefused, match="HTTP 400"):
                await channel.send(notification())
        finally:
            await channel.close()
            await receiver.stop()
        return receiver

    assert asyncio.run(go()).requests == 1


def test_a_receiver_down_then_back_gets_the_message() -> None:
    """Nothing listens on the port at first (connection refused, retried); the receiver starts there
    once the channel has retried a few times, and gets the message. Each retry is reported as it
    happens (the notifier's retry metric moves during the outage, not after it)."""
    reported: list[int] = []

    async def go() -> tuple[Receiver, WebhookChannel]:
        port = free_port()
        receiver = Receiver([], port)
        channel = WebhookChannel(f"http://127.0.0.1:{port}/hook", "json", first_wait_s=0.01, max_wait_s=0.05,
                                 on_retry=lambda: reported.append(1))
        sending = asyncio.ensure_future(channel.send(notification()))
        while len(reported) < 3:
            await asyncio.sleep(0.01)
        assert not sending.done() and channel.retries == len(reported)
        await receiver.start()
        await asyncio.wait_for(sending, 10)
        await channel.close()
        await receiver.stop()
        return receiver, channel

    receiver, channel = asyncio.run(go())
    assert len(receiver.bodies) == 1 and channel.retries >= 3


class Collecting:
    def __init__(self, name: str, refuse: bool = False) -> None:
        self.name, self.refuse, self.got = name, refuse, []  # type: ignore[var-annotated]

    async def send(self, n: Any) -> None:
        if self.refuse:
            raise NotificationRefused("HTTP 404: no such hook")
        self.got.append(n.id)


def test_every_channel_gets_each_message_and_a_refusal_is_reported_not_fatal() -> None:
    good, bad = Collecting("good"), Collecting("bad", refuse=True)
    records = [anomaly(at_s=0), anomaly(score=1.1, at_s=500, sequence=2), anomaly("AAPL", 1, sequence=3)]
    outcome = asyncio.run(Notify(lambda: NotificationPolicy("medium", 300 * S), [good, bad])(records))
    assert good.got == [records[0].id, records[2].id]
    assert outcome.below_severity == 1 and outcome.held_back == 0
    assert [r[:2] for r in outcome.refused] == [("bad", records[0].id), ("bad", records[2].id)]
    assert outcome.sent == []  # refused by one webhook: not counted as sent (the refusals are)
    outcome = asyncio.run(Notify(lambda: NotificationPolicy("medium", 300 * S), [good])(records))
    assert [n.id for n in outcome.sent] == [records[0].id, records[2].id] and outcome.refused == []


def decisions(policy: NotificationPolicy, records: list[Anomaly]) -> list[tuple[str, int]]:
    return [(d, n.held_back if n else -1) for d, n in map(policy.decide, records)]


def test_a_policy_recalled_from_its_memory_decides_as_if_it_had_never_stopped() -> None:
    records = [anomaly(sym, t, sequence=k) for k, (sym, t) in enumerate(
        [("NVDA", 0), ("AAPL", 5), ("NVDA", 60), ("NVDA", 120), ("AAPL", 200), ("MSFT", 250),
         ("NVDA", 310), ("AAPL", 320), ("AAPL", 330), ("MSFT", 560)])]
    for cut in range(len(records) + 1):
        whole = NotificationPolicy("low", 300 * S)
        expected = decisions(whole, records)
        first = NotificationPolicy("low", 300 * S)
        before = decisions(first, records[:cut])
        memory, left_out = first.memory()
        assert left_out == 0 and len(memory) <= MEMORY_LIMIT and memory.isascii()
        again = NotificationPolicy("low", 300 * S)
        again.recall(memory)
        assert before + decisions(again, records[cut:]) == expected, cut
    # The cut that matters: NVDA held back twice before a restart is still told in its next message.
    assert expected[6] == ("send", 2)
    fresh = NotificationPolicy("low", 300 * S)
    assert decisions(fresh, records[4:])[2] == ("send", 0)  # what a notifier without the memory said


def test_the_memory_keeps_what_can_still_matter_and_stays_under_the_commit_metadata_limit() -> None:
    policy = NotificationPolicy("low", 300 * S)
    assert policy.memory() == ("", 0)
    policy.admit(anomaly("OLD", 0))
    policy.admit(anomaly("HELD", 0, sequence=2))
    policy.admit(anomaly("HELD", 10, sequence=3))  # held back: its count is kept however old
    policy.admit(anomaly("NEW", 2 * 3600, sequence=4))
    again = NotificationPolicy("low", 300 * S)
    again.recall(policy.memory()[0])
    assert again.admit(anomaly("OLD", 1)) is not None  # sent two hours before the newest: forgotten
    assert again.admit(anomaly("NEW", 2 * 3600 + 1, sequence=5)) is None
    assert again.admit(anomaly("HELD", 3 * 3600, sequence=6)).held_back == 1  # type: ignore[union-attr]
    # A market's worth of symbols: the most recently sent are kept, the rest counted as left out.
    crowded = NotificationPolicy("low", 300 * S)
    for k in range(3_000):
        crowded.admit(anomaly(f"S{k:04d}", k / 10, sequence=k))
    memory, left_out = crowded.memory()
    assert len(memory) <= MEMORY_LIMIT and 0 < left_out < 3_000
    kept = NotificationPolicy("low", 300 * S)
    kept.recall(memory)
    assert kept.admit(anomaly("S2999", 299.9, sequence=9_999)) is None  # the newest is remembered
    assert kept.admit(anomaly("S0000", 1, sequence=9_998)) is not None  # the oldest had to go


@pytest.mark.parametrize("memory", ["np2:abc", "garbage", "np1:!!!", "np1:" + "A" * 8])
def test_a_memory_that_cannot_be_read_is_refused_whole(memory: str) -> None:
    policy = NotificationPolicy("low", 300 * S)
    policy.admit(anomaly("NVDA", 0))
    with pytest.raises(ValueError, match="notifier memory"):
        policy.recall(memory)
    assert policy.admit(anomaly("NVDA", 1, sequence=2)) is None  # unchanged


def test_each_stream_has_a_policy_of_its_own_recalled_or_fresh() -> None:
    sent = Collecting("hook")
    notify = Notify(lambda: NotificationPolicy("low", 300 * S), [sent])
    asyncio.run(notify([anomaly("NVDA", 0)], 0))
    asyncio.run(notify([anomaly("NVDA", 10, sequence=2)], 1))  # another partition: its own limit
    assert len(sent.got) == 2
    memory = notify.policy(0).memory()[0]
    notify.forget(0)
    notify.recall(3, memory)
    assert asyncio.run(notify([anomaly("NVDA", 20, sequence=3)], 3)).held_back == 1
    with pytest.raises(ValueError):
        notify.recall(4, "garbage")
    assert asyncio.run(notify([anomaly("NVDA", 30, sequence=4)], 4)).sent  # started afresh


@pytest.mark.parametrize(("args", "env", "message"), [
    ([], {}, "no webhook to notify"),
    (["--webhook", "ftp://x"], {}, "webhook 'json:ftp://x' is not"),
    (["--webhook", "http://127.0.0.1:abc/h"], {}, "webhook 'json:http://127.0.0.1:abc/h' is not"),
    ([], {"STOCKANOMALY_NOTIFY_WEBHOOKS": "slack:hooks.example"}, "webhook 'slack:hooks.example' is not"),
    (["--webhook", "http://127.0.0.1:1/h"], {"STOCKANOMALY_NOTIFY_PER_SYMBOL_SECONDS": "-1"},
     "STOCKANOMALY_NOTIFY_PER_SYMBOL_SECONDS"),
    (["--webhook", "http://127.0.0.1:1/h"], {"STOCKANOMALY_NOTIFY_MIN_SEVERITY": "urgent"},
     "STOCKANOMALY_NOTIFY_MIN_SEVERITY"),
])
def test_notify_configuration_errors_are_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    result = CliRunner().invoke(main, ["notify", *args], env=env)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_empty_group_is_refused_not_taken_for_the_default_one() -> None:
    """`--group ""` joined the default group, sharing (taking) the records of the notifiers in it."""
    result = CliRunner().invoke(main, ["notify", "--webhook", "http://127.0.0.1:1/h", "--group", ""])
    assert result.exit_code == 2 and "Error: Invalid value for --group: names no consumer group" in result.output


def test_a_webhook_is_named_in_logs_by_its_host_never_its_secret_path() -> None:
    secret = "T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
    channel = WebhookChannel(f"https://user:pw@hooks.slack.com/services/{secret}?token=abc", "slack")
    assert channel.name == "slack:https://hooks.slack.com"


def test_the_heartbeat_stops_while_kafka_does_not_answer_and_a_missing_topic_is_said(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import structlog

    from adapters.kafka import notifier
    from aiokafka.errors import KafkaConnectionError

    clock = [1000.0]
    monkeypatch.setattr(notifier.time, "monotonic", lambda: clock[0])

    class Kafka:
        answers: set[str] | None = {"other"}  # None: unreachable

        async def topics(self) -> set[str]:
            if self.answers is None:
                raise KafkaConnectionError("Unable to bootstrap")
            return self.answers

    kafka = Kafka()
    probe = notifier._Probe(kafka, "anomalies")
    saved = structlog.get_config()
    structlog.reset_defaults()  # an earlier test's configuration may filter out info events

    def alive_at(t: float) -> bool:
        clock[0] = t
        return asyncio.run(probe.alive())

    try:
        with structlog.testing.capture_logs() as logs:
            assert alive_at(1000)  # asked at once: Kafka answers, the topic is not there
            kafka.answers = {"anomalies"}
            assert alive_at(1005)  # not asked again yet
            assert alive_at(1010)
            kafka.answers = None
            assert alive_at(1020) and alive_at(1030)  # cut off for 20 s: still within the grace
            assert not alive_at(1040)  # 30 s since Kafka last answered: the heartbeat file goes stale
            kafka.answers = {"anomalies"}
            assert alive_at(1050)
    finally:
        structlog.configure(**saved)
    assert [e["event"] for e in logs] == ["topic_missing", "topic_appeared", "kafka_unreachable", "kafka_reachable"]
    assert logs[2]["error"] == "KafkaConnectionError: Unable to bootstrap"  # its type once (it names it itself)


def test_a_notifier_that_cannot_start_says_so_in_one_line_without_its_banner() -> None:
    """The 'notifying ...' banner came before a start-up error, and the Kafka error named its type twice."""
    result = CliRunner().invoke(main, ["notify", "--webhook", "http://127.0.0.1:1/h"],
                                env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "STOCKANOMALY_NOTIFIER_METRICS_PORT": "0",
                                     "STOCKANOMALY_METRICS_ADDR": "127.0.0.1"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "notifying" not in result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error == ("Error: cannot read anomalies from Kafka at 127.0.0.1:1: "
                     "KafkaConnectionError: no broker answered at 127.0.0.1:1")
    assert error.count("KafkaConnectionError") == 1


def test_an_address_the_notifier_cannot_serve_metrics_on_is_named_with_its_variable() -> None:
    """It said 'STOCKANOMALY_NOTIFIER_METRICS_PORT 9102: [Errno 99] Cannot assign requested address', blaming
    the port for STOCKANOMALY_METRICS_ADDR (192.0.2.1: TEST-NET-1, on no machine's interfaces)."""
    result = CliRunner().invoke(main, ["notify", "--webhook", "http://127.0.0.1:1/h"],
                                env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "STOCKANOMALY_NOTIFIER_METRICS_PORT": "0",
                                     "STOCKANOMALY_METRICS_ADDR": "192.0.2.1"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error == ("Error: cannot serve /metrics on 192.0.2.1:0 (STOCKANOMALY_METRICS_ADDR / "
                     "STOCKANOMALY_NOTIFIER_METRICS_PORT): Cannot assign requested address")


@pytest.mark.parametrize(("flags", "env", "shown"), [
    ([], {}, True),  # a service: STOCKANOMALY_LOG_LEVEL's INFO, as the worker and the indexer
    ([], {"STOCKANOMALY_LOG_LEVEL": "WARNING"}, False),
    (["--log-level", "warning"], {}, False),  # said on the command line: that level
], ids=["default-info", "variable", "flag"])
def test_the_notifier_logs_at_the_services_level_so_kafka_coming_back_is_said(
        monkeypatch, flags: list[str], env: dict[str, str], shown: bool) -> None:
    """At the commands' default (WARNING) a notifier logged kafka_unreachable when Kafka went away
    and nothing when it came back (kafka_reachable is INFO), nor notifier_started."""
    import adapters.kafka.notifier

    async def back_then_done(*args: object, started: Any, **kwargs: object) -> None:
        started()
        structlog.get_logger().warning("kafka_unreachable", topic="anomalies")
        structlog.get_logger().info("kafka_reachable", topic="anomalies")

    monkeypatch.setattr(adapters.kafka.notifier, "notify_from_topic", back_then_done)
    monkeypatch.delenv("STOCKANOMALY_LOG_LEVEL", raising=False)
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(main, [*flags, "notify", "--webhook", "http://127.0.0.1:1/h"],
                                    env={"STOCKANOMALY_NOTIFIER_METRICS_PORT": "0",
                                         "STOCKANOMALY_METRICS_ADDR": "127.0.0.1", **env})
    finally:
        structlog.configure(**saved)
    assert result.exit_code == 0, result.output
    assert "kafka_unreachable" in result.stderr
    assert ("kafka_reachable" in result.stderr) is shown


@pytest.mark.parametrize(("seconds", "limit"), [("300", "at most one per symbol per 300s of event time"),
                                                ("0", "no per-symbol limit")])
def test_the_banner_says_the_per_symbol_limit_or_that_there_is_none(monkeypatch, seconds: str, limit: str) -> None:
    """With STOCKANOMALY_NOTIFY_PER_SYMBOL_SECONDS=0 the banner promised 'at most one per symbol per 0s'."""
    import adapters.kafka.notifier

    async def started_then_done(*args: object, started: Any, **kwargs: object) -> None:
        started()

    monkeypatch.setattr(adapters.kafka.notifier, "notify_from_topic", started_then_done)
    result = CliRunner().invoke(main, ["notify", "--webhook", "http://127.0.0.1:1/h"],
                                env={"STOCKANOMALY_NOTIFY_PER_SYMBOL_SECONDS": seconds,
                                     "STOCKANOMALY_NOTIFIER_METRICS_PORT": "0", "STOCKANOMALY_METRICS_ADDR": "127.0.0.1"})
    assert result.exit_code == 0, result.output
    [banner] = [line for line in result.output.splitlines() if line.startswith("notifying")]
    assert banner.endswith(f"severity medium and above, {limit}")


@pytest.mark.parametrize("status", [200, 503, 400])
def test_a_reply_body_that_is_not_utf8_does_not_break_the_delivery(status: int) -> None:
    """The receiver's reply is only read for the log line: a 200 answered with Latin-1 (or binary)
    text raised UnicodeDecodeError out of `send`, and the notifier stopped with a traceback, the
    message delivered but its batch never committed (sent again, and stopped again, at every restart)."""
    async def go() -> list[int]:
        receiver = Receiver([status], reply=b"caf\xe9 \xff")
        channel = WebhookChannel(await receiver.start(), "json", first_wait_s=0.01, max_wait_s=0.05)
        try:
            if status == 400:
                with pytest.raises(NotificationRefused, match="HTTP 400: caf"):
                    await channel.send(notification())
            else:
                await channel.send(notification())
        finally:
            await channel.close()
            await receiver.stop()
        return receiver.answered

    assert asyncio.run(go()) == ([503, 200] if status == 503 else [status])


def test_each_notified_line_says_how_long_its_batch_took_its_webhooks_to_take(monkeypatch) -> None:
    """StockanomalyNotifierLagGrowing's runbook sends the operator to the `notified` lines for a slow
    webhook, and they carried no time."""
    import json

    import adapters.kafka.notifier
    from entrypoints import cli_streaming

    receiver = Receiver([], port=free_port())

    async def one_batch(bootstrap: str, topic: str, group: str, handle: Any, *args: object, started: Any,
                        **kwargs: object) -> None:
        started()
        await receiver.start()
        try:
            await handle([anomaly()], 0)
        finally:
            await receiver.stop()

    monkeypatch.setattr(adapters.kafka.notifier, "notify_from_topic", one_batch)
    # a logger bound afresh under the notifier's configuration (the module's may be cached by an earlier test)
    monkeypatch.setattr(cli_streaming, "log", structlog.get_logger())
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(main, ["notify", "--webhook",
                                           f"http://127.0.0.1:{receiver.port}/hook"],
                                    env={"STOCKANOMALY_NOTIFIER_METRICS_PORT": "0",
                                         "STOCKANOMALY_METRICS_ADDR": "127.0.0.1"})
    finally:
        structlog.configure(**saved)
    assert result.exit_code == 0, result.output
    assert len(receiver.bodies) == 1
    [line] = [json.loads(x) for x in result.stderr.splitlines() if '"notified"' in x]
    assert (line["sent"], line["partition"]) == (1, 0) and 0 < line["seconds"] < 30


def test_the_notifier_beats_its_loop_blocked_gauge_from_its_own_event_loop(monkeypatch) -> None:
    """The notifier exported no stockanomaly_event_loop_blocked_seconds: a notifier whose loop was
    blocked was invisible. Its beats come from the loop that runs the notifier."""
    import adapters.kafka.notifier
    from adapters.metrics import PrometheusMetrics

    beats: list[asyncio.AbstractEventLoop] = []
    loops: list[asyncio.AbstractEventLoop] = []
    real_beat = PrometheusMetrics.event_loop_beat

    def beat(self: PrometheusMetrics) -> None:
        beats.append(asyncio.get_running_loop())
        real_beat(self)

    async def until_beaten(*args: object, started: Any, **kwargs: object) -> None:
        started()
        loops.append(asyncio.get_running_loop())
        for _ in range(1000):  # the beat is a task of this loop: it runs when this one yields
            if beats:
                break
            await asyncio.sleep(0)

    monkeypatch.setattr(PrometheusMetrics, "event_loop_beat", beat)
    monkeypatch.setattr(adapters.kafka.notifier, "notify_from_topic", until_beaten)
    result = CliRunner().invoke(main, ["notify", "--webhook", "http://127.0.0.1:1/h"],
                                env={"STOCKANOMALY_NOTIFIER_METRICS_PORT": "0", "STOCKANOMALY_METRICS_ADDR": "127.0.0.1"})
    assert result.exit_code == 0, result.output
    assert beats and set(beats) == set(loops)


def test_the_clients_lines_of_the_missing_topic_are_said_at_debug_while_topic_missing_says_it(
        monkeypatch: pytest.MonkeyPatch, logs_of: Any) -> None:
    """A fresh notify before the first worker printed 4 `kafka client:` lines (coordinator not available,
    topic not found, coordinator dead, no partition metadata) beside its own `topic_missing`."""
    import logging

    from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError

    from adapters.kafka import notifier

    class Kafka:
        answers = {"other"}

        async def topics(self) -> set[str]:
            return self.answers

    kafka = Kafka()
    clock = [1000.0]
    monkeypatch.setattr(notifier.time, "monotonic", lambda: clock[0])
    logger = logging.getLogger("aiokafka.test_notify_missing")  # its own: its level changes below
    logger.setLevel(logging.WARNING)
    said = notifier.SaidWhileTopicMissing("anomalies", "g")
    logs = logs_of(notifier)

    def shown(template: str, *args: object, level: int = logging.ERROR) -> str | None:
        record = logger.makeRecord(logger.name, level, "", 0, template, args, None)
        return record.levelname if said.filter(record) else None

    assert shown("Topic %s not found in cluster metadata", "anomalies") == "ERROR"  # no probe yet: shown
    said.probe = notifier._Probe(kafka, "anomalies")
    asyncio.run(said.probe.alive())
    assert [e["event"] for e in logs] == ["topic_missing"]
    assert shown("Topic %s not found in cluster metadata", "anomalies") is None
    assert shown("No partition metadata for topic %s", "anomalies", level=logging.WARNING) is None
    assert shown("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError()) is None
    assert shown("Marking the coordinator dead (node %s)for group %s.", 1, "g", level=logging.WARNING) is None
    # Anything else is shown as it comes: another topic, group or error, another message.
    assert shown("Topic %s not found in cluster metadata", "incidents") == "ERROR"
    assert shown("Marking the coordinator dead (node %s)for group %s.", 1, "h", level=logging.WARNING) == "WARNING"
    assert shown("Group Coordinator Request failed: %s", KafkaConnectionError()) == "ERROR"
    assert shown("Unable connect to node with id %s: %s", 1, "refused") == "ERROR"
    logger.setLevel(logging.DEBUG)  # where the client's debug is shown, they are, at DEBUG
    assert shown("Topic %s not found in cluster metadata", "anomalies") == "DEBUG"
    logger.setLevel(logging.WARNING)
    kafka.answers = {"anomalies"}  # a worker created it: the client's lines of it are news again
    clock[0] += notifier.PROBE_SECONDS
    asyncio.run(said.probe.alive())
    assert [e["event"] for e in logs] == ["topic_missing", "topic_appeared"]
    assert shown("Topic %s not found in cluster metadata", "anomalies") == "ERROR"
    assert shown("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError()) == "ERROR"
