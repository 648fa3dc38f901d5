"""A Docker engine (Debian's docker.io) for the compose stack, on host networking only."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from .base import Service, base_env
from .install import apt_install, say
from .proc import PidRecord, ServiceError, _start_ticks

SOCKET = Path("/var/run/docker.sock")
ENGINE_PID = Path("/var/run/docker.pid")
# What the engine and the image builds need: the engine, compose 1.29 (works with this engine's
# API), and debootstrap for the base image (no image registry is reachable).
PACKAGES = {"dockerd": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}


def ping(path: Path = SOCKET, timeout: float = 2.0) -> bool:
    """GET /_ping on the engine's socket: True once it serves its API."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] + b" "


class DockerEngine(Service):
    """`dockerd --bridge=none --iptables=false`: these machines have no bridge and no NAT, so every
    container runs with `network_mode: host`. An engine that already answers is used as it is and
    left running by `down` (only one started here is stopped)."""

    name = "docker"

    def install(self) -> bool:
        missing = sorted({pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None})
        if missing:
            apt_install(missing)
        still = [cmd for cmd in PACKAGES if shutil.which(cmd) is None]
        if still:
            raise ServiceError(f"docker: {', '.join(still)} still missing after installing "
                               f"{', '.join(missing)}")
        return not missing

    def start(self) -> PidRecord:
        if ping():
            say("docker: an engine started elsewhere answers on "
                f"{SOCKET}; using it (`down` leaves it running)")
            return _external_engine()
        return super().start()

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str], Path, str | None]:
        argv = [shutil.which("dockerd") or "dockerd", "--bridge=none", "--iptables=false",
                "--ip6tables=false"]
        return argv, base_env(), self.dir, None

    def healthy(self) -> bool:
        return ping()

    def ports(self) -> list[int]:
        return []

    def endpoint(self) -> str:
        return f"unix://{SOCKET}"


def _external_engine() -> PidRecord:
    """A record for an engine this script did not start (never written to a pid file)."""
    try:
        pid = int(ENGINE_PID.read_text().strip())
    except (OSError, ValueError):
        pid = os.getpid()  # the engine answers but names no pid: nothing of ours to watch
    ticks = _start_ticks(pid)
    if ticks is None:
        raise ServiceError(f"docker: {ENGINE_PID} names pid {pid}, which is not running")
    return PidRecord(pid=pid, start_ticks=ticks)
