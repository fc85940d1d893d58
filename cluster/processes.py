"""Start, probe and stop server processes safely.

Servers run in their own session (``start_new_session=True``) so they outlive the CLI
process. Before any signal is sent the pid is checked against /proc (start time and
cmdline) so a recycled pid belonging to an unrelated process is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_cluster_saver.connection import STRICT_PROXY_ARGS

from .model import Node
from .ports import HOST, PortClash

POLL_INTERVAL = 0.05


def no_retry() -> Retry:
    """Zero retries: redis-py 8 retries 3x with backoff by default; the harness polls instead.

    A fresh object each time because connections mutate their Retry.
    """
    return Retry(NoBackoff(), 0)


# Popen objects of children started by this process, so killed children can be reaped
# (otherwise they linger as zombies and look alive in /proc).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StartupError(RuntimeError):
    """A server failed to start or the topology did not become ready in time."""


def identity_args(identity: tuple[int, int] | None) -> dict[str, Any]:
    """Popen arguments that run a child as ``(uid, gid)`` (and no other groups); none for
    None, which keeps the current user."""
    if identity is None:
        return {}
    uid, gid = identity
    return {"user": uid, "group": gid, "extra_groups": []}


def spawn(
    argv: Sequence[str], workdir: Path, name: str, identity: tuple[int, int] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached in ``workdir``; stdout/stderr go to ``<name>.out``.

    ``identity`` (uid, gid) runs it as another user (root only), see ``identity_args``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / f"{name}.out", "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            **identity_args(identity),
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if the pid is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def proc_starttime(pid: int) -> int:
    """Kernel start time of ``pid`` (clock ticks since boot), 0 if unknown."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0  # field 22 overall; 3rd field is index 0


def proc_cmdline(pid: int) -> str:
    """The (possibly retitled) command line of ``pid`` as one string."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def is_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (reaping our own dead children)."""
    _reap(pid)
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def owns(node: Node, workdir: str | Path) -> bool:
    """True only if ``node.pid`` is still the very process the harness started.

    Checks the kernel start time recorded at spawn and that the command line mentions the
    node's port (servers retitle themselves to ``host:port``) or its working directory.
    """
    if node.pid <= 0 or not is_running(node.pid):
        return False
    if node.starttime and proc_starttime(node.pid) != node.starttime:
        return False
    cmd = proc_cmdline(node.pid)
    if f":{node.port}" in cmd or f" {node.port}" in cmd:
        return True
    return bool(str(workdir)) and str(workdir) in cmd


def signal_node(node: Node, workdir: str | Path, sig: signal.Signals) -> bool:
    """Send ``sig`` to the node if (and only if) the harness owns it."""
    if not owns(node, workdir):
        return False
    try:
        os.kill(node.pid, sig)
    except ProcessLookupError:
        return False
    return True


def terminate(nodes: Iterable[Node], workdir: str | Path, timeout: float = 5.0) -> None:
    """Send owned nodes their stop signal (SIGTERM unless the node says otherwise; paused
    ones are resumed first), wait for them to exit, then SIGKILL stragglers."""
    victims = [n for n in nodes if owns(n, workdir)]
    for n in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(n.pid, signal.SIGCONT)
            os.kill(n.pid, signal.Signals[n.stop_signal])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        victims = [n for n in victims if is_running(n.pid)]
        if not victims:
            return
        time.sleep(POLL_INTERVAL)
    for n in victims:
        if owns(n, workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(n.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while victims and time.monotonic() < deadline:
        victims = [n for n in victims if is_running(n.pid)]
        time.sleep(POLL_INTERVAL)


def log_tail(path: str | Path, lines: int = 20) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def admin_client(
    port: int, timeout: float = 1.0, *, decode: bool = True, **client_kwargs: Any
) -> redis.Redis:
    """A short-timeout RESP2 client for harness bookkeeping commands.

    ``client_kwargs`` go to redis-py as they are (``tls_client_kwargs`` for a TLS node).
    """
    return redis.Redis(
        host=HOST,
        port=port,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=no_retry(),
        **{**STRICT_PROXY_ARGS, **client_kwargs},
    )


def tls_client_kwargs(node: Node, client_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What ``admin_client`` needs to reach ``node``: TLS (with the deployment's CA, from
    ``client_kwargs``) when its URL is ``rediss://``, nothing otherwise."""
    if not node.url.startswith("rediss://"):
        return {}
    return {"ssl": True, **client_kwargs}


def command(client: redis.Redis, *args: Any) -> Any:
    """``client.execute_command`` with a typed signature (redis-py leaves it untyped)."""
    execute: Callable[..., Any] = client.execute_command
    return execute(*args)


def _check_failed(node: Node, proc: subprocess.Popen[bytes] | None) -> None:
    """Raise if the process died; PortClash when it died because the port was taken."""
    dead = proc.poll() is not None if proc is not None else not is_running(node.pid)
    if not dead:
        return
    tail = log_tail(node.log)
    out = Path(node.log).with_suffix(".out")
    if out.exists() and out != Path(node.log):
        tail += "\n" + log_tail(out, 5)
    if "already in use" in tail.lower():
        raise PortClash(f"{node.name} could not bind port {node.port}:\n{tail}")
    raise StartupError(f"{node.name} (port {node.port}) exited during startup:\n{tail}")


def wait_until(
    check: Callable[[], str | None],
    timeout: float,
    what: str,
    nodes: Sequence[Node] = (),
    procs: dict[int, subprocess.Popen[bytes]] | None = None,
) -> None:
    """Poll ``check`` (returns None when satisfied, else a reason) every 50 ms.

    While waiting, dead processes abort immediately with the tail of their log.
    """
    deadline = time.monotonic() + timeout
    reason: str | None = "not checked"
    while True:
        for n in nodes:
            _check_failed(n, (procs or {}).get(n.pid))
        try:
            reason = check()
        except (redis.RedisError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n.name} ({n.log}):\n{log_tail(n.log, 8)}" for n in nodes)
            raise StartupError(
                f"timed out after {timeout:.0f}s waiting for {what}: {reason}\n{logs}"
            )
        time.sleep(POLL_INTERVAL)


def wait_pingable(
    nodes: Sequence[Node],
    procs: dict[int, subprocess.Popen[bytes]],
    timeout: float = 15.0,
    client_kwargs: dict[str, Any] | None = None,
) -> None:
    """Wait until every node answers PING (all polled together, so startup is parallel).

    ``client_kwargs`` are added to each probe client (TLS settings for a TLS node).
    """
    pending = list(nodes)

    def check() -> str | None:
        for n in list(pending):
            client = admin_client(n.port, timeout=0.5, **(client_kwargs or {}))
            try:
                if client.ping():
                    pending.remove(n)
            except (redis.RedisError, OSError):
                pass
            finally:
                client.close()
        return None if not pending else f"no PING reply from {[n.name for n in pending]}"

    wait_until(check, timeout, "servers to answer PING", nodes, procs)
