"""The domain stays pure: it imports only the standard library and numerical libraries (numpy,
scikit-learn, and numba for the compiled kernels), never infrastructure."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ALLOWED_THIRD_PARTY = {"numpy", "sklearn", "numba"}
LAYERS = {"domain", "application", "adapters", "entrypoints"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def outside_imports(layer: str, allowed: set[str]) -> dict[str, set[str]]:
    bad = {}
    for path in (SRC / layer).rglob("*.py"):
        extra = imported_roots(path) - set(sys.stdlib_module_names) - allowed - {"__future__"}
        if extra:
            bad[str(path.relative_to(SRC))] = extra
    return bad


def test_domain_imports_only_stdlib_and_numerical_libraries() -> None:
    assert outside_imports("domain", ALLOWED_THIRD_PARTY | {"domain"}) == {}


def test_application_depends_only_on_the_domain() -> None:
    assert outside_imports("application", ALLOWED_THIRD_PARTY | {"domain", "application"}) == {}


def test_import_contracts_hold() -> None:
    import subprocess

    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=SRC.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_layer_type_checks() -> None:
    # mypy with the project's settings (pyproject.toml: every package under src, untyped defs refused).
    import subprocess

    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=SRC.parent, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
