"""Prometheus from Debian's package, run with the project's config and alert rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

from .base import Service, base_env
from .install import require_command
from .proc import ServiceError

COMPOSE_ONLY = re.compile(r"^[ \t]*# BEGIN compose-only.*?# END compose-only[^\n]*\n",
                          re.S | re.M)


RULE_FILES = re.compile(r"^(rule_files:\n(?:[ \t]+- .*\n)+)", re.M)


def local_config(project_config: str, port: int, alertmanager_port: int = 9094) -> str:
    """The project's prometheus.yml minus the jobs that only resolve inside docker compose, plus
    a `local-rules/` directory where tests drop short-window rule groups (then POST /-/reload)."""
    text = COMPOSE_ONLY.sub("", project_config)
    text, found = RULE_FILES.subn(lambda m: m.group(1) + "  - local-rules/*.yml\n", text, count=1)
    if not found:
        raise ServiceError("prometheus: deploy/prometheus/prometheus.yml has no rule_files list")
    return text.replace("localhost:9090", f"localhost:{port}").replace("127.0.0.1:9094", f"127.0.0.1:{alertmanager_port}")


class Prometheus(Service):
    name = "prometheus"

    @property
    def _deploy(self) -> Path:
        return self.settings.repo / "deploy" / "prometheus"

    def install(self) -> bool:
        cached = shutil.which("prometheus") is not None
        require_command("prometheus", "prometheus")
        return cached

    def prepare(self) -> None:
        for sub in ("data", "targets", "local-rules"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        rules = self.dir / "rules"
        if rules.is_symlink() or rules.exists():
            rules.unlink() if rules.is_symlink() else shutil.rmtree(rules)
        rules.symlink_to(self._deploy / "rules", target_is_directory=True)
        config = self.dir / "prometheus.yml"
        config.write_text(local_config((self._deploy / "prometheus.yml").read_text(),
                                       self.settings.prometheus_port, self.settings.alertmanager_port))
        promtool = shutil.which("promtool")
        if promtool:
            check = subprocess.run([promtool, "check", "config", str(config)],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                raise ServiceError(f"prometheus: {config} (from {self._deploy}/prometheus.yml) "
                                   f"is invalid:\n{check.stdout}{check.stderr}")

    def command(self) -> tuple[list[str], dict[str, str], Path, str | None]:
        s = self.settings
        argv = [shutil.which("prometheus") or "prometheus",
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address={s.host}:{s.prometheus_port}",
                "--web.enable-lifecycle"]
        return argv, base_env(), self.dir, None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.settings.prometheus_url}/-/ready",
                                        timeout=3) as response:
                return response.status == 200
        except OSError:
            return False

    def ports(self) -> list[int]:
        return [self.settings.prometheus_port]

    def endpoint(self) -> str:
        return self.settings.prometheus_url
