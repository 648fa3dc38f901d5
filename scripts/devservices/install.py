"""Cached installs: Maven Central artifacts, Debian packages, JDK discovery, zip extraction."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .proc import ServiceError

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def say(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def is_root() -> bool:
    return os.geteuid() == 0


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(argv: list[str], *, what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        raise ServiceError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n"
                           + "\n".join(output[-25:]))
    return proc.stdout


def apt_install(packages: list[str]) -> None:
    """Install Debian packages without letting their init scripts start any daemon."""
    if not is_root():
        raise ServiceError(f"{' '.join(packages)} missing and not root: "
                           f"run `sudo apt-get install -y --no-install-recommends "
                           f"{' '.join(packages)}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    # policy-rc.d exit 101 = "action forbidden": Debian's postinst then starts no service
    # (the prometheus package would otherwise start its own server on :9090).
    created_policy = not POLICY_RC_D.exists()
    if created_policy:
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        say(f"apt-get install {' '.join(packages)}")
        try:
            _run(argv, what="apt-get install", env=env)
        except ServiceError:
            say("apt-get install failed; refreshing package lists and retrying")
            _run(["apt-get", "update", "-q"], what="apt-get update", env=env)
            _run(argv, what="apt-get install", env=env)
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def apt_candidate(package: str) -> bool:
    proc = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    match = re.search(r"Candidate:\s*(\S+)", proc.stdout)
    return bool(match) and match.group(1) != "(none)"


def require_command(command: str, package: str) -> str:
    found = shutil.which(command)
    if found:
        return found
    apt_install([package])
    found = shutil.which(command)
    if not found:
        raise ServiceError(f"`{command}` still missing after installing {package}")
    return found


def java_major(java_home: Path) -> int | None:
    """The feature release of a JDK/JRE home, from its `release` file or `java -version`."""
    release = java_home / "release"
    text = release.read_text(errors="replace") if release.exists() else ""
    match = re.search(r'JAVA_VERSION="(\d+)', text)
    if not match:
        java = java_home / "bin" / "java"
        if not java.exists():
            return None
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
        match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def _has_module(java_home: Path, module: str) -> bool:
    out = subprocess.run([str(java_home / "bin" / "java"), "--list-modules"],
                         capture_output=True, text=True).stdout
    return any(line.split("@")[0] == module for line in out.splitlines())


def _jvm_homes() -> list[Path]:
    """Candidate JDK homes: $JAVA_HOME, the default `java`, then /usr/lib/jvm newest first."""
    homes = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    java = shutil.which("java")
    if java:
        homes.append(Path(java).resolve().parents[1])
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        homes += sorted((p for p in jvm.iterdir() if (p / "bin" / "java").exists()),
                        key=lambda p: java_major(p) or 0, reverse=True)
    return homes


def find_java_home(minimum: int, *, explicit: str = "", needs_module: str = "",
                   apt_packages: tuple[str, ...] = ()) -> Path:
    """A JDK home of at least `minimum`, preferring an explicit one, then /usr/lib/jvm."""
    if explicit:
        home = Path(explicit)
        major = java_major(home)
        if major is None or major < minimum:
            raise ServiceError(f"{home} is Java {major}, need {minimum}+")
        return home
    for _ in range(2):
        for home in _jvm_homes():
            major = java_major(home)
            if major and major >= minimum and (not needs_module
                                               or _has_module(home, needs_module)):
                return home
        installable = [p for p in apt_packages if apt_candidate(p)] if is_root() else []
        if not installable:
            break
        apt_install(installable[:1])
    raise ServiceError(
        f"no Java {minimum}+ JDK found (looked at $JAVA_HOME, /usr/lib/jvm/*, java on PATH"
        + (f"; tried Debian packages {', '.join(apt_packages)}: none available" if apt_packages
           else "") + "). Set STOCKANOMALY_ES_JAVA_HOME to a JDK home.")


def maven(settings_cache: Path, args: list[str], *, what: str, pom: Path | None = None) -> None:
    mvn = require_command("mvn", "maven")
    argv = [mvn, "-B", "-q", f"-Dmaven.repo.local={settings_cache / 'm2'}"]
    if pom is not None:
        argv += ["-f", str(pom)]
    _run(argv + args, what=what)


def extract_zip(archive: Path, dest: Path) -> None:
    """Unpack a zip keeping Unix permissions (zipfile alone drops the executable bits)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = dest / info.filename
            if not target.resolve().is_relative_to(dest.resolve()):
                raise ServiceError(f"{archive}: unsafe path {info.filename}")
            mode = (info.external_attr >> 16) & 0o7777
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
            if mode:
                target.chmod(mode)


def link_copy(src: Path, dest: Path) -> None:
    """Copy a read-only tree cheaply: hard links when on one filesystem, else a real copy."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, copy_function=os.link, symlinks=True)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, symlinks=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
