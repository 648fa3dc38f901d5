"""A single-node Elasticsearch from the integ-test-zip distribution on Maven Central."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import urllib.request
from pathlib import Path

from .base import Service, base_env
from .install import (MAVEN_DEPENDENCY_PLUGIN, extract_zip, find_java_home, is_root, link_copy,
                      maven, say)

GROUP_PATH = "org/elasticsearch/distribution/integ-test-zip/elasticsearch"
# Elasticsearch 9 needs Java 21+, and its entitlement agent needs the jdk.jdi module (so the
# trimmed runtimes on PyPI do not do). Debian bookworm ships only 17; newer releases ship these.
JDK_PACKAGES = ("openjdk-21-jdk-headless", "openjdk-25-jdk-headless")


class Elasticsearch(Service):
    name = "elasticsearch"

    @property
    def _cache_dir(self) -> Path:
        return self.settings.cache / "elasticsearch" / self.settings.es_version

    @property
    def es_root(self) -> Path:
        """Where ES's own files live; it runs as another user, who must reach this path."""
        if not is_root() or _others_can_traverse(self.dir):
            return self.dir
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"stockanomaly-es-{digest}"

    def install(self) -> bool:
        done = self._cache_dir / ".complete"
        if done.exists():
            return True
        v = self.settings.es_version
        say(f"elasticsearch: resolving integ-test-zip {v} from Maven Central")
        maven(self.settings.cache, [
            f"{MAVEN_DEPENDENCY_PLUGIN}:get", "-Dtransitive=false",
            f"-Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:{v}:zip"],
            what="resolving Elasticsearch")
        archive = self.settings.cache / "m2" / GROUP_PATH / v / f"elasticsearch-{v}.zip"
        tmp = self._cache_dir / "unpack.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        extract_zip(archive, tmp)
        home = self._cache_dir / "home"
        shutil.rmtree(home, ignore_errors=True)
        (tmp / f"elasticsearch-{v}").rename(home)
        shutil.rmtree(tmp)
        done.touch()
        return False

    def _java_home(self) -> Path:
        return find_java_home(21, explicit=self.settings.es_java_home, needs_module="jdk.jdi",
                              apt_packages=JDK_PACKAGES)

    def _user(self) -> str | None:
        if not is_root():
            return None  # Elasticsearch refuses root only; any other user runs it directly.
        name = self.settings.es_user
        try:
            pwd.getpwnam(name)
        except KeyError:
            say(f"elasticsearch: creating system user {name}")
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                           check=True)
        return name

    def prepare(self) -> None:
        s, root = self.settings, self.es_root
        self._java_home()  # fail before starting anything when no suitable JDK exists
        home = root / "home"
        stamp = root / "home.version"
        if not stamp.exists() or stamp.read_text() != s.es_version:
            root.mkdir(parents=True, exist_ok=True)
            link_copy(self._cache_dir / "home", home)
            stamp.write_text(s.es_version)
        config = root / "config"
        (config / "jvm.options.d").mkdir(parents=True, exist_ok=True)
        for item in ("jvm.options", "log4j2.properties", "roles.yml", "users", "users_roles",
                     "role_mapping.yml"):
            if (home / "config" / item).exists():
                shutil.copy(home / "config" / item, config / item)
        (config / "elasticsearch.yml").write_text(ELASTICSEARCH_YML.format(
            host=s.host, port=s.es_port, transport_port=s.es_transport_port,
            data=root / "data", logs=root / "logs"))
        (config / "jvm.options.d" / "stockanomaly.options").write_text(
            f"-Xms{s.es_heap}\n-Xmx{s.es_heap}\n")
        for sub in ("data", "logs", "tmp"):
            (root / sub).mkdir(exist_ok=True)
        user = self._user()
        if user:
            entry = pwd.getpwnam(user)
            for path in (root, config, root / "data", root / "logs", root / "tmp"):
                _chown_tree(path, entry.pw_uid, entry.pw_gid, skip=home)

    def command(self) -> tuple[list[str], dict[str, str], Path, str | None]:
        root = self.es_root
        env = base_env(ES_JAVA_HOME=str(self._java_home()), ES_PATH_CONF=str(root / "config"),
                       ES_TMPDIR=str(root / "tmp"), HOME=str(root))
        return [str(root / "home" / "bin" / "elasticsearch")], env, root, self._user()

    def healthy(self) -> bool:
        url = f"{self.settings.es_url}/_cluster/health?wait_for_status=yellow&timeout=1s"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                body = json.load(response)
        except (OSError, ValueError):
            return False
        return body.get("status") in ("green", "yellow") and not body.get("timed_out")

    def ports(self) -> list[int]:
        return [self.settings.es_port, self.settings.es_transport_port]

    def endpoint(self) -> str:
        return self.settings.es_url

    def log_paths(self) -> list[Path]:
        return [self.log_path, self.es_root / "logs" / "stockanomaly-local.log"]

    def purge_paths(self) -> list[Path]:
        return [self.dir, self.es_root]


def _others_can_traverse(path: Path) -> bool:
    for p in [path, *path.parents]:
        if p.exists() and not p.stat().st_mode & 0o001:
            return False
    return True


def _chown_tree(path: Path, uid: int, gid: int, *, skip: Path) -> None:
    os.chown(path, uid, gid)
    if path == skip.parent:
        return  # the run root itself: its children are handled one by one, home stays root's
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


ELASTICSEARCH_YML = """\
# Written by scripts/services.sh on every `up`; edit scripts/devservices/elasticsearch.py instead.
cluster.name: stockanomaly-local
node.name: local-1
path.data: {data}
path.logs: {logs}
network.host: {host}
http.port: {port}
transport.port: {transport_port}
discovery.type: single-node
# Local tests only: no TLS, no passwords.
xpack.security.enabled: false
# Developer and CI disks are often nearly full; never refuse shards or turn indices read-only
# because of free space on a throwaway test node.
cluster.routing.allocation.disk.threshold_enabled: false
# Let test clean-up delete indices by wildcard.
action.destructive_requires_name: false
"""
