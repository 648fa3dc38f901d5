"""structlog configured once per process: JSON lines when not on a terminal, readable on a TTY."""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from adapters.kafka.client_logs import at_debug


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


@dataclass(slots=True)
class _Episode:
    """One message's run of repeats: when it was first and last seen, and how many were held back."""

    first: float
    last: float
    held: int = 0


class OncePerOutage(logging.Filter):
    """A Kafka client's complaints said once per outage: a client retrying in a loop while its broker
    is away logs the same errors again and again for as long as it lasts (aiokafka: 373,000 lines in
    30 s from a command; each let through at most once per 30 s, still 22 lines in a 94 s outage from
    a worker and as many from `notify`, 4 more for every 30 s it lasts). Per warning or error (its
    logger and its template, `record.msg`, not the values filled in), the first is let through at its
    level; its repeats are held back (let through at DEBUG where the logger shows DEBUG, else dropped
    and counted) until none has come for `quiet` seconds: then one line says how many were held back
    and over how long, and the message's next occurrence is news again. Checked at every record, and
    by a timer while repeats are held, so the line comes even if the client then says nothing more.
    Below WARNING everything passes (a start's "Discovered coordinator", one per producer, is no noise).

    A message never seen (or not seen for `quiet` seconds) is always let through: nothing new is
    hidden. At most `keys` messages are remembered; the one seen least recently is forgotten first
    (with its line, if it held any back)."""

    def __init__(self, quiet: float = 60.0, keys: int = 256, clock: Callable[[], float] = time.monotonic,
                 schedule: Callable[[float, Callable[[], None]], None] | None = None) -> None:
        super().__init__()
        self.quiet, self.keys, self.clock = quiet, keys, clock
        self.schedule = schedule or _after
        self.episodes: OrderedDict[tuple[str, str], _Episode] = OrderedDict()
        self.lock = threading.Lock()  # the timer's thread and the logging threads
        self.armed = False

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, HELD_BACK):  # our own line, on its way through the same loggers
            return True
        key, now = (record.name, str(record.msg)), self.clock()
        with self.lock:
            ended = self._ended(now)
            episode = self.episodes.get(key)
            if record.levelno < logging.WARNING:
                shown = True
            elif episode is None:
                while len(self.episodes) >= self.keys:
                    ended.append(self.episodes.popitem(last=False))
                self.episodes[key] = _Episode(now, now)
                shown = True
            else:
                episode.last, episode.held = now, episode.held + 1
                self.episodes.move_to_end(key)
                shown = False
            arm = not shown and not self.armed
            self.armed = self.armed or arm
        self._say(ended, now)
        if arm:
            self.schedule(self.quiet, self.settle)
        if shown:
            return True
        return at_debug(record)

    def settle(self) -> None:
        """Say the runs of repeats that have stopped; while some have not, look again when the first
        of them could have."""
        now = self.clock()
        with self.lock:
            ended = self._ended(now)
            held = [e.last for e in self.episodes.values() if e.held]
            self.armed = bool(held)
        self._say(ended, now)
        if held:
            self.schedule(max(min(held) + self.quiet - now, 0.0), self.settle)

    def say_held(self) -> None:
        """Say every run of repeats still held back, stopped or not: the process stops, and its timer
        (a daemon thread) would never come."""
        now = self.clock()
        with self.lock:
            held = [(key, episode) for key, episode in self.episodes.items() if episode.held]
            for key, _ in held:
                del self.episodes[key]
        self._say(held, now, stopping=True)

    def _ended(self, now: float) -> list[tuple[tuple[str, str], _Episode]]:
        # Kept in the order last seen (a repeat moves its message to the end): the ones that have
        # stopped are at the front, and a record costs no walk through all of them.
        ended = []
        while self.episodes and now - next(iter(self.episodes.values())).last >= self.quiet:
            ended.append(self.episodes.popitem(last=False))
        return ended

    def _say(self, ended: list[tuple[tuple[str, str], _Episode]], now: float, stopping: bool = False) -> None:
        for (name, template), episode in ended:
            if not episode.held:
                continue
            logger = logging.getLogger(name)
            quiet = now - episode.last
            text = (f"{episode.held:,} more of {template[:200]!r} held back over {episode.last - episode.first:,.0f} s "
                    + (f"(the last {quiet:,.0f} s before the process stopped)" if stopping else
                       f"(none for {quiet:,.0f} s)"))
            # A warning, also for errors: they were said when they began; that they stopped is not one.
            logger.handle(logger.makeRecord(name, logging.WARNING, "", 0, text, (), None, func="held_back",
                                            extra={HELD_BACK: episode.held}))


HELD_BACK = "held_back"  # the attribute that marks OncePerOutage's own lines (and how many they stand for)


def say_held_back_at_exit() -> None:
    """What the OncePerOutage filters still installed hold back, said as the process exits (a command
    stopped mid-outage, or a worker stopped): without it, how many repeats were hidden went unsaid.
    Never raises: a handler whose stream is closed (a test runner's, a pipe gone) is passed over, and
    one that fails to write drops the line, as logging does at exit anyway."""
    saved, logging.raiseExceptions = logging.raiseExceptions, False  # no "--- Logging error ---" at exit
    try:
        for once in _installed_filters():
            try:
                once.say_held()
            except Exception:  # the process is ending: nowhere left to say it, and no reason to fail its exit
                continue
    finally:
        logging.raiseExceptions = saved


def _installed_filters() -> list[OncePerOutage]:
    """The OncePerOutage filters on a logger, or on a handler whose stream is open, each once."""
    found: dict[int, OncePerOutage] = {}
    loggers = [logging.getLogger(), *(logger for logger in list(logging.Logger.manager.loggerDict.values())
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        filters = list(logger.filters)
        for handler in list(logger.handlers):
            if not getattr(getattr(handler, "stream", None), "closed", False):
                filters.extend(handler.filters)
        found.update((id(f), f) for f in filters if isinstance(f, OncePerOutage))
    return list(found.values())


# Registered after logging's own exit hook, so it runs before that one closes the handlers.
atexit.register(say_held_back_at_exit)


def _after(seconds: float, call: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, call)
    timer.daemon = True  # never keeps a stopping process alive
    timer.start()


def quiet_kafka_client(quiet: float = 60.0) -> None:
    """The Kafka client's own warnings and errors on stderr, each once per outage (OncePerOutage),
    for the commands (the worker's logging is Faust's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kafka client: %(message)s"))
    # A broker that does not answer the first connection: the command stops on the client's error,
    # in its own line; the client's message of it would make that two.
    handler.addFilter(lambda record: record.funcName != "bootstrap")
    handler.addFilter(OncePerOutage(quiet))
    client = logging.getLogger("aiokafka")
    client.handlers[:] = [handler]
    client.propagate = False


class Demoted(logging.Filter):
    """Some of a logger's INFO lines said at DEBUG (by their template, `record.msg`): shown only where
    the logger shows DEBUG."""

    def __init__(self, *templates: str) -> None:
        super().__init__()
        self.templates = frozenset(templates)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or str(record.msg) not in self.templates:
            return True
        return at_debug(record)


def throttle_kafka_client(quiet: float = 60.0) -> None:
    """The worker's Kafka client messages, each once per outage (OncePerOutage; Faust's handlers and
    format kept): one filter on every aiokafka logger, as a logger's filters do not reach its children.
    Call once the client's modules are imported.

    A consumer's "Updating subscribed topics to:" is said at DEBUG: the log reader of the offset checks
    (adapters.faust.sequence.LogReader) assigns itself each partition it reads, and the indexer checks
    one after every take of the workers (their transaction markers): at INFO that was a six-line table
    about twice a second. Faust's own tables still show what the group consumer subscribes to."""
    once = OncePerOutage(quiet)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "aiokafka" or name.startswith("aiokafka.")) and isinstance(logger, logging.Logger):
            logger.addFilter(once)
    logging.getLogger("aiokafka.consumer.subscription_state").addFilter(Demoted("Updating subscribed topics to: %s"))
