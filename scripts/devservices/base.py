"""What every local service shares: its run directory, pid file, log, start and health wait."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .config import Settings
from .proc import PidRecord, ServiceError, port_open, running, spawn, tail


class Service:
    name = "service"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.run / self.name

    # -- what a concrete service defines -------------------------------------------------
    def install(self) -> bool:
        """Fetch or reuse cached binaries; True when everything came from the cache."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configuration and create data directories under the run dir."""
        raise NotImplementedError

    def command(self) -> tuple[list[str], dict[str, str], Path, str | None]:
        """argv, environment, working directory and user (None: the current one)."""
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def ports(self) -> list[int]:
        raise NotImplementedError

    def endpoint(self) -> str:
        raise NotImplementedError

    def purge_paths(self) -> list[Path]:
        return [self.dir]

    # -- shared behaviour -----------------------------------------------------------------
    @property
    def pid_path(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}.log"

    def log_paths(self) -> list[Path]:
        return [self.log_path]

    def running(self) -> PidRecord | None:
        return running(self.pid_path)

    def start(self) -> PidRecord:
        busy = [p for p in self.ports() if port_open(self.settings.host, p)]
        if busy:
            raise ServiceError(
                f"{self.name}: port(s) {', '.join(map(str, busy))} on {self.settings.host} are "
                f"taken by a process services.sh did not start; stop it or move this service "
                f"(STOCKANOMALY_*_PORT variables, see docs/services.md)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv, env, cwd, user = self.command()
        return spawn(argv, pid_path=self.pid_path, log_path=self.log_path, cwd=cwd, env=env,
                     user=user)

    def wait_healthy(self, record: PidRecord, deadline: float) -> None:
        while True:
            if not record.alive():
                self.pid_path.unlink(missing_ok=True)
                raise ServiceError(f"{self.name} exited while starting; log: {self.log_path}\n"
                                   f"{self._log_tails()}")
            try:
                if self.healthy():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} not healthy within {self.settings.timeout_s:.0f}s "
                    f"(STOCKANOMALY_SERVICE_TIMEOUT); log: {self.log_path}\n"
                    f"{self._log_tails()}")
            time.sleep(0.25)


    def _log_tails(self) -> str:
        return "\n".join(f"--- last lines of {path}:\n{tail(path, 15)}"
                         for path in self.log_paths() if path.exists())


def base_env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra)
    return env
