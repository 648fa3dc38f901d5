"""Local images for docker compose on a machine with no image registry (`services.sh images`).

stockanomaly-base is a Debian bookworm root filesystem from debootstrap (cached as a tarball),
imported with `docker import`, plus a virtualenv (infra/images/base); the Kafka, Elasticsearch,
Prometheus and Alertmanager images are built on it from the artifacts the local services use.
docker-compose.host.yml runs the stack with them. An image is rebuilt only when its inputs (its
infra/images folder, the artifacts' versions, its parent image) changed: they are hashed into a
label of the image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .elasticsearch import Elasticsearch
from .install import link_copy, say
from .kafka import Kafka
from .proc import ServiceError

LABEL = "io.stockanomaly.inputs"
HOST_CAS = Path("/usr/local/share/ca-certificates")  # authorities the host's admin added
SUITE = "bookworm"
# python3 is 3.11 on bookworm; python3-venv brings ensurepip's wheels for the virtualenv.
ROOTFS_PACKAGES = ("python3", "python3-venv", "ca-certificates")
ROOTFS = f"stockanomaly-rootfs:{SUITE}"
BASE = f"stockanomaly-base:{SUITE}"
KAFKA = "stockanomaly-kafka:local"
ELASTICSEARCH = "stockanomaly-elasticsearch:local"
PROMETHEUS = "stockanomaly-prometheus:local"
ALERTMANAGER = "stockanomaly-alertmanager:local"


@dataclass(frozen=True, slots=True)
class Outcome:
    tag: str
    built: bool
    seconds: float


def docker(*args: str, what: str, stream: bool = False) -> str:
    """Run the docker CLI (the classic builder: its layer cache, no buildx plugin needed)."""
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    argv = ["docker", *args]
    if stream:  # long builds: their output goes to our stderr as it comes
        proc = subprocess.run(argv, env=env, stdout=2, stderr=2)
        if proc.returncode != 0:
            raise ServiceError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}")
        return ""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServiceError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def image_inputs(tag: str) -> str | None:
    """The inputs label of a local image, or None when there is no such image."""
    proc = subprocess.run(["docker", "image", "inspect", "-f",
                           f'{{{{index .Config.Labels "{LABEL}"}}}}', tag],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_id(tag: str) -> str:
    return docker("image", "inspect", "-f", "{{.Id}}", tag, what=f"inspecting {tag}").strip()


def tree_digest(*paths: Path) -> str:
    """Digest of files' relative names and contents (small trees: the infra/images folders)."""
    digest = hashlib.sha256()
    for root in paths:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


class Images:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.infra = settings.repo / "infra" / "images"
        self.work = settings.run / "images"  # build contexts assembled from the caches
        self.cache = settings.cache / "docker"
        self.mirror = os.environ.get("STOCKANOMALY_DEBIAN_MIRROR") or "http://deb.debian.org/debian"

    # -- the images -------------------------------------------------------------------------
    def build_all(self) -> list[Outcome]:
        with self._locked():
            outcomes = [self.rootfs(), self.base()]
            outcomes += [self.kafka(), self.elasticsearch(), self.simple("prometheus", PROMETHEUS),
                         self.simple("alertmanager", ALERTMANAGER)]
        return outcomes

    def rootfs(self) -> Outcome:
        key = digest(SUITE, self.mirror, "minbase", *ROOTFS_PACKAGES)
        tag = f"stockanomaly-rootfs:{key[:12]}"
        started = time.monotonic()
        if image_inputs(tag) is not None:
            docker("tag", tag, ROOTFS, what="tagging the root filesystem")
            return Outcome(ROOTFS, False, time.monotonic() - started)
        tarball = self.cache / f"rootfs-{SUITE}-{key[:12]}.tar"
        if not tarball.exists():
            self._debootstrap(tarball)
        say(f"images: importing {tarball} as {ROOTFS}")
        docker("import", str(tarball), tag, what="docker import")
        docker("tag", tag, ROOTFS, what="tagging the root filesystem")
        return Outcome(ROOTFS, True, time.monotonic() - started)

    def base(self) -> Outcome:
        context = self.work / "base"
        infra = self.infra / "base"
        host_cas = sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []

        def assemble() -> None:
            (context / "ca-certificates").mkdir(parents=True)
            shutil.copy(infra / "Dockerfile", context / "Dockerfile")
            for ca in host_cas:
                shutil.copy(ca, context / "ca-certificates" / ca.name)

        cas = [f"{ca.name}:{hashlib.sha256(ca.read_bytes()).hexdigest()}" for ca in host_cas]
        return self._build(BASE, context, infra, inputs=[image_id(ROOTFS), *cas],
                           build_args={"ROOTFS": ROOTFS}, assemble=assemble)

    def kafka(self) -> Outcome:
        service = Kafka(self.settings)
        service.install()
        context = self.work / "kafka"
        infra = self.infra / "kafka"

        def assemble() -> None:
            link_copy(service.lib, context / "libs")
            for name in ("bin", "config"):
                (context / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(infra / "Dockerfile", context / "Dockerfile")
            shutil.copy(infra / "run-kafka.sh", context / "bin" / "run-kafka.sh")
            for tool in ("kafka-topics.sh", "kafka-broker-api-versions.sh"):
                shutil.copy(infra / "kafka-tool.sh", context / "bin" / tool)
            for name in ("log4j2.properties", "tools-log4j2.properties"):
                shutil.copy(infra / name, context / "config" / name)

        return self._build(KAFKA, context, infra, inputs=[image_id(BASE), str(service.lib)],
                           assemble=assemble)

    def elasticsearch(self) -> Outcome:
        service = Elasticsearch(self.settings)
        service.install()
        java_home = service._java_home()
        release = (java_home / "release").read_text() if (java_home / "release").exists() else ""
        context = self.work / "elasticsearch"
        infra = self.infra / "elasticsearch"

        def assemble() -> None:
            context.mkdir(parents=True, exist_ok=True)
            link_copy(service._cache_dir / "home", context / "home")
            link_copy(java_home, context / "jdk")
            for unneeded in ("man", "include", "lib/src.zip", "jmods"):  # sources, headers: not run
                path = context / "jdk" / unneeded
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            for name in ("Dockerfile", "run-elasticsearch.sh"):
                shutil.copy(infra / name, context / name)

        return self._build(ELASTICSEARCH, context, infra,
                           inputs=[image_id(BASE), self.settings.es_version, str(java_home), release],
                           assemble=assemble)

    def simple(self, name: str, tag: str) -> Outcome:
        return self._build(tag, self.infra / name, self.infra / name, inputs=[image_id(BASE)])

    # -- how -------------------------------------------------------------------------------------
    def _build(self, tag: str, context: Path, infra: Path, *, inputs: list[str],
               build_args: dict[str, str] | None = None, assemble=None) -> Outcome:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        key = digest(tree_digest(infra), *inputs)
        if image_inputs(tag) == key:
            return Outcome(tag, False, time.monotonic() - started)
        if assemble is not None:
            shutil.rmtree(context, ignore_errors=True)
            assemble()
        args = [f"--build-arg=BASE_IMAGE={BASE}"]
        args += [f"--build-arg={k}={v}" for k, v in (build_args or {}).items()]
        say(f"images: building {tag}")
        # Host networking: the engine here has no bridge (apt reaches Debian from the host's network).
        docker("build", "--network=host", f"--label={LABEL}={key}", *args, "-t", tag, str(context),
               what=f"building {tag}", stream=True)
        if assemble is not None:
            shutil.rmtree(context, ignore_errors=True)  # copies of cached artifacts: not kept
        return Outcome(tag, True, time.monotonic() - started)

    def _debootstrap(self, tarball: Path) -> None:
        root = tarball.with_suffix(".root")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        say(f"images: debootstrap --variant=minbase {SUITE} from {self.mirror} (a few minutes, once)")
        proc = subprocess.run(["debootstrap", "--variant=minbase",
                               f"--include={','.join(ROOTFS_PACKAGES)}", SUITE, str(root),
                               self.mirror], capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise ServiceError(f"images: debootstrap failed (exit {proc.returncode}):\n"
                               f"{(proc.stdout + proc.stderr)[-3000:]}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):  # downloaded .debs, lists
            for entry in (root / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tmp = tarball.with_suffix(".tmp")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tmp), "."], check=True)
        tmp.replace(tarball)
        shutil.rmtree(root, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One image build at a time (apart from services.sh's own lock: builds take minutes)."""
        self.settings.run.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.settings.run / ".images.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
