"""structlog configured once per process: JSON lines when not on a terminal, readable on a TTY."""

from __future__ import annotations

import logging
import sys
import time

import structlog


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


class OncePer(logging.Filter):
    """Lets a message through at most once per `seconds` (per logger and message template): a
    client library retrying in a loop while its server is away logs the same error many times a
    second (aiokafka: 373,000 lines in 30 s of a Kafka outage)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.shown: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, record.msg), time.monotonic()
        if now - self.shown.get(key, -self.seconds) < self.seconds:
            return False
        self.shown[key] = now
        return True


def quiet_kafka_client(seconds: float = 30.0) -> None:
    """The Kafka client's own warnings and errors on stderr, each at most once per `seconds`, for
    the commands (the worker's logging is Faust's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"kafka client: %(message)s (each shown at most every {seconds:g} s)"))
    # A broker that does not answer the first connection: the command stops on the client's error,
    # in its own line; the client's message of it would make that two.
    handler.addFilter(lambda record: record.funcName != "bootstrap")
    handler.addFilter(OncePer(seconds))
    client = logging.getLogger("aiokafka")
    client.handlers[:] = [handler]
    client.propagate = False


def throttle_kafka_client(seconds: float = 30.0) -> None:
    """The worker's Kafka client messages, each at most once per `seconds` (Faust's handlers and
    format kept): a filter on every aiokafka logger, as a logger's filters do not reach its children.
    Call once the client's modules are imported."""
    once = OncePer(seconds)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "aiokafka" or name.startswith("aiokafka.")) and isinstance(logger, logging.Logger):
            logger.addFilter(once)
