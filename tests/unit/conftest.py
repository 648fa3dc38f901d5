import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from collections.abc import Callable, Iterator  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import structlog  # noqa: E402
from structlog.testing import capture_logs  # noqa: E402


@pytest.fixture
def logs_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """`logs_of(module, ...)`: what those modules' `log` logs, every level, whatever an earlier test
    configured (a logger cached on first use, a level filter)."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as logs:
            def watch(*modules: ModuleType) -> list[dict[str, Any]]:
                for module in modules:
                    monkeypatch.setattr(module, "log", structlog.get_logger())
                return logs
            yield watch
    finally:
        structlog.configure(**saved)
