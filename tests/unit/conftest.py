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


@pytest.fixture(scope="session", autouse=True)
def kernels_on_disk() -> Iterator[None]:
    """The CLI's "compiling the ... kernels" line is not said, whichever tests ran before: a fresh
    clone's first command to run them compiles, and its line on stderr came before the --json the test
    parses (CliRunner's output holds both). For the whole session, so module fixtures (set up before
    a function's) run under it too; the tests of that line set `kernels_cached` themselves."""
    import entrypoints.cli as cli

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "kernels_cached", lambda kernel=None: True)
        yield
