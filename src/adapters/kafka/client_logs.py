"""The Kafka client's log lines, as our filters hold them back (no client import: the CLI's start-up
reads this)."""

from __future__ import annotations

import logging


def at_debug(record: logging.LogRecord) -> bool:
    """A client's line a filter holds back: let through at DEBUG where its logger shows DEBUG (True,
    the record lowered), else dropped (False)."""
    if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True
    return False
