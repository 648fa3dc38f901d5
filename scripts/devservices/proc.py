"""Process handling: detached start, pid files that survive pid reuse, group stop, port probes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be installed, started or stopped; the message says where to look."""


@dataclass(frozen=True, slots=True)
class PidRecord:
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a recycled pid from ours

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks and _state(self.pid) != "Z"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, found through /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def read_pid(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def running(path: Path) -> PidRecord | None:
    """The record in a pid file if that very process still runs; a stale file is removed."""
    record = read_pid(path)
    if record is None:
        return None
    if record.alive():
        return record
    path.unlink(missing_ok=True)
    return None


def spawn(argv: list[str], *, pid_path: Path, log_path: Path, cwd: Path,
          env: dict[str, str], user: str | None = None) -> PidRecord:
    """Start argv detached in its own session (so `down` can stop its whole group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    user_kwargs: dict = {}
    if user is not None:
        user_kwargs = {"user": user, "group": user, "extra_groups": []}
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n"
                  .encode())
        log.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, **user_kwargs)
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        raise ServiceError(f"{argv[0]} exited at once; see {log_path}")
    record = PidRecord(pid=proc.pid, start_ticks=ticks)
    tmp = pid_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": record.pid, "start_ticks": record.start_ticks,
                               "argv": argv}))
    tmp.replace(pid_path)
    return record


def stop(record: PidRecord, *, grace_s: float = 30.0) -> None:
    """SIGTERM the process group the service leads, then SIGKILL what outlives the grace."""
    pgid = record.pid
    if not record.alive():
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_members(pgid):
            return
        time.sleep(0.2)
    for pid in _group_members(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])
