"""The Kafka client's own messages during an outage: each said once, its repeats held back, and one
line when they stop (entrypoints.logging_setup.OncePerOutage)."""

from __future__ import annotations

import io
import itertools
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from entrypoints.logging_setup import HELD_BACK, OncePerOutage, quiet_kafka_client, say_held_back_at_exit

_names = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[[], None]]] = []  # (due, call), as a timer thread would

    def __call__(self) -> float:
        return self.now

    def schedule(self, seconds: float, call: Callable[[], None]) -> None:
        self.timers.append((self.now + seconds, call))

    def advance(self, seconds: float) -> None:
        """Time passes with nothing logged: the timers due meanwhile go off."""
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, call in due:
            call()


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in self.records]


@pytest.fixture
def client() -> Iterator[tuple[logging.Logger, Kept]]:
    """A logger of the client's, at INFO (the worker's level), with a handler keeping what it shows."""
    logger = logging.getLogger(f"aiokafka.test_noise_{next(_names)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    kept = Kept()
    logger.addHandler(kept)
    yield logger, kept
    logger.removeHandler(kept)
    logger.filters.clear()


def test_an_outages_repeats_are_held_back_and_said_in_one_line_when_they_stop(client) -> None:
    logger, kept = client
    clock = Clock()
    logger.addFilter(OncePerOutage(quiet=60, clock=clock, schedule=clock.schedule))
    for second in range(90):  # a broker away for 90 s: the client retries, and says so, all along
        for _ in range(10):
            logger.error("Unable connect to node with id %s: %s", 1, f"[Errno 111] at {second}")
        logger.error("Unable to update metadata from %s", [1])
        clock.advance(1)
    assert kept.lines == [("ERROR", "Unable connect to node with id 1: [Errno 111] at 0"),
                          ("ERROR", "Unable to update metadata from [1]")]
    clock.advance(58)  # the broker is back: no repeat for 59 s yet
    assert len(kept.lines) == 2
    clock.advance(1)
    assert kept.lines[2:] == [
        ("WARNING", "899 more of 'Unable connect to node with id %s: %s' held back over 89 s (none for 60 s)"),
        ("WARNING", "89 more of 'Unable to update metadata from %s' held back over 89 s (none for 60 s)")]
    assert [getattr(r, HELD_BACK) for r in kept.records[2:]] == [899, 89]
    logger.error("Unable connect to node with id %s: %s", 1, "refused")  # the next outage: news again
    assert kept.lines[-1] == ("ERROR", "Unable connect to node with id 1: refused")


def test_the_line_comes_at_the_next_record_when_the_repeats_stopped_before_it(client) -> None:
    logger, kept = client
    clock = Clock()
    logger.addFilter(OncePerOutage(quiet=60, clock=clock, schedule=lambda seconds, call: None))  # no timer
    for _ in range(3):
        logger.warning("Marking the coordinator dead (node %s) for group %s.", 1, "g")
    clock.now += 61
    logger.info("Discovered coordinator %s for group %s", 1, "g")
    assert kept.lines == [("WARNING", "Marking the coordinator dead (node 1) for group g."),
                          ("WARNING", "2 more of 'Marking the coordinator dead (node %s) for group %s.' held back "
                                      "over 0 s (none for 61 s)"),
                          ("INFO", "Discovered coordinator 1 for group g")]


def test_what_is_not_a_warning_or_an_error_is_never_held_back(client) -> None:
    """A worker's start says "Discovered coordinator" once per transactional producer: no outage."""
    logger, kept = client
    clock = Clock()
    logger.addFilter(OncePerOutage(quiet=60, clock=clock, schedule=clock.schedule))
    for partition in range(4):
        logger.info("Discovered coordinator %s for transactional id %s", 1, f"worker-{partition}")
    assert [message for _, message in kept.lines] == [f"Discovered coordinator 1 for transactional id worker-{p}"
                                                      for p in range(4)]
    assert clock.timers == []


def test_a_new_kind_of_message_is_always_shown_and_the_memory_stays_bounded(client) -> None:
    logger, kept = client
    clock = Clock()
    once = OncePerOutage(quiet=60, keys=3, clock=clock, schedule=clock.schedule)
    logger.addFilter(once)
    logger.error("first %s", 1)
    logger.error("first %s", 2)  # held back
    for n in range(20):  # more kinds than it remembers: every one shown
        logger.error(f"kind {n} %s", n)
    assert len(once.episodes) == 3
    shown = [message for _, message in kept.lines]
    # `first` is forgotten for kind 2 (the least recently seen of three), and its repeat said then
    assert shown == ["first 1", "kind 0 0", "kind 1 1", "1 more of 'first %s' held back over 0 s (none for 0 s)",
                     *(f"kind {n} {n}" for n in range(2, 20))]


def test_repeats_are_let_through_at_debug_where_the_logger_shows_debug(client) -> None:
    logger, kept = client
    logger.setLevel(logging.DEBUG)
    clock = Clock()
    logger.addFilter(OncePerOutage(quiet=60, clock=clock, schedule=clock.schedule))
    for attempt in range(3):
        logger.error("Failed fetch messages from %s: %s", 1, attempt)
    assert kept.lines == [("ERROR", "Failed fetch messages from 1: 0"), ("DEBUG", "Failed fetch messages from 1: 1"),
                          ("DEBUG", "Failed fetch messages from 1: 2")]


def test_the_line_comes_from_the_timer_when_the_client_says_nothing_more(client) -> None:
    logger, kept = client
    said = threading.Event()

    class Wait(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, HELD_BACK):
                said.set()

    waiting = Wait()
    logger.addHandler(waiting)
    logger.addFilter(OncePerOutage(quiet=0.05))  # a real timer thread
    try:
        for _ in range(5):
            logger.error("Unable to update metadata from %s", [1])
        assert said.wait(5), "no line after the repeats stopped"
    finally:
        logger.removeHandler(waiting)
    assert [level for level, _ in kept.lines] == ["ERROR", "WARNING"]
    assert kept.lines[1][1].startswith("4 more of 'Unable to update metadata from %s' held back over ")


def test_a_commands_kafka_client_lines_are_said_once_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    client = logging.getLogger("aiokafka")
    saved = client.handlers[:], client.propagate
    quiet_kafka_client(quiet=60)
    try:
        child = logging.getLogger("aiokafka.test_noise_command")
        for attempt in range(1000):
            child.error("Unable connect to node with id %s: %s", 1, attempt)
        child.warning("Topic %s not found in cluster metadata", "anomalies")
    finally:
        client.handlers[:], client.propagate = saved
    assert stderr.getvalue().splitlines() == ["kafka client: Unable connect to node with id 1: 0",
                                              "kafka client: Topic anomalies not found in cluster metadata"]


def test_what_is_held_back_when_the_process_stops_is_said_at_its_exit(client) -> None:
    """A command stopped mid-outage never said its "N more of ..." lines: the timer is a daemon thread."""
    logger, kept = client
    clock = Clock()
    logger.addFilter(OncePerOutage(quiet=60, clock=clock, schedule=clock.schedule))
    for _ in range(3):
        logger.warning("Topic %s not found in cluster metadata", "anomalies")
    logger.error("Unable to update metadata from %s", [1])  # said once, nothing held back: nothing more to say
    clock.advance(5)
    assert len(kept.lines) == 2
    say_held_back_at_exit()
    assert kept.lines[2:] == [("WARNING", "2 more of 'Topic %s not found in cluster metadata' held back over 0 s "
                                          "(the last 5 s before the process stopped)")]
    say_held_back_at_exit()  # said once
    assert len(kept.lines) == 3


def test_at_exit_a_filter_no_longer_installed_or_on_a_closed_stream_says_nothing_and_nothing_raises(
        client, capsys: pytest.CaptureFixture[str]) -> None:
    logger, kept = client
    removed = OncePerOutage(quiet=60, clock=Clock(), schedule=lambda seconds, call: None)
    logger.addFilter(removed)
    stream = io.StringIO()
    closed = logging.StreamHandler(stream)
    closed.addFilter(OncePerOutage(quiet=60, clock=Clock(), schedule=lambda seconds, call: None))
    logger.addHandler(closed)
    try:
        for _ in range(3):
            logger.warning("Heartbeat failed for group %s", "g")
        logger.removeFilter(removed)
        stream.close()
        say_held_back_at_exit()
    finally:
        logger.removeHandler(closed)
    assert [message for _, message in kept.lines] == ["Heartbeat failed for group g"]
    assert capsys.readouterr().err == ""


def test_a_command_stopped_mid_outage_says_what_it_held_back_as_it_exits() -> None:
    program = """
import logging
from entrypoints.logging_setup import quiet_kafka_client
quiet_kafka_client()
for _ in range(3):
    logging.getLogger("aiokafka.cluster").warning("Topic %s not found in cluster metadata", "anomalies")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "kafka client: Topic anomalies not found in cluster metadata"
    assert len(lines) == 2 and lines[1].startswith(
        "kafka client: 2 more of 'Topic %s not found in cluster metadata' held back over 0 s (the last 0 s before")
