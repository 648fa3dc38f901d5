"""Alertmanager from Debian's package, run with the project's routes and receivers."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

from .base import Service, base_env
from .install import require_command
from .proc import ServiceError

WEBHOOK = "127.0.0.1:9099"  # the receivers' address in deploy/alertmanager/alertmanager.yml


def local_config(project_config: str, webhook_port: int) -> str:
    """The project's alertmanager.yml with its webhook receivers on STOCKANOMALY_ALERT_WEBHOOK_PORT."""
    if WEBHOOK not in project_config:
        raise ServiceError(f"alertmanager: deploy/alertmanager/alertmanager.yml has no receiver at {WEBHOOK}")
    return project_config.replace(WEBHOOK, f"127.0.0.1:{webhook_port}")


class Alertmanager(Service):
    name = "alertmanager"

    @property
    def _deploy(self) -> Path:
        return self.settings.repo / "deploy" / "alertmanager"

    def install(self) -> bool:
        cached = shutil.which("prometheus-alertmanager") is not None
        require_command("prometheus-alertmanager", "prometheus-alertmanager")
        return cached

    def prepare(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        config = self.dir / "alertmanager.yml"
        config.write_text(local_config((self._deploy / "alertmanager.yml").read_text(),
                                       self.settings.alert_webhook_port))
        amtool = shutil.which("amtool")
        if amtool:
            check = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
            if check.returncode != 0:
                raise ServiceError(f"alertmanager: {config} (from {self._deploy}/alertmanager.yml) "
                                   f"is invalid:\n{check.stdout}{check.stderr}")

    def command(self) -> tuple[list[str], dict[str, str], Path, str | None]:
        s = self.settings
        argv = [shutil.which("prometheus-alertmanager") or "prometheus-alertmanager",
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address={s.host}:{s.alertmanager_port}",
                "--cluster.listen-address="]  # one instance: no gossip port
        return argv, base_env(), self.dir, None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.settings.alertmanager_url}/-/ready", timeout=3) as response:
                return response.status == 200
        except OSError:
            return False

    def ports(self) -> list[int]:
        return [self.settings.alertmanager_port]

    def endpoint(self) -> str:
        return self.settings.alertmanager_url
