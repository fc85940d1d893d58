"""The harness's PostgreSQL: benchmarks compare against it, so it must start as users run
it, answer on its URL and leave no process behind."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from cluster import available, healthy, run_root, start, stop
from cluster.model import load_state
from cluster.processes import is_running
from tests.support.harness_cli import harness_cli

pytestmark = pytest.mark.skipif(
    available("postgres") is not None,
    reason=f"postgres topology unavailable: {available('postgres')}",
)


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (the postmaster's checkpointer, walwriter, ...)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("Uid:"))
    return int(line.split()[1])


def test_postgres_answers_queries_and_stop_ends_every_process() -> None:
    dep = start("postgres", owner_pid=os.getpid())
    try:
        assert dep.url.startswith("postgresql://postgres@127.0.0.1:")
        assert healthy(dep) is None
        (node,) = dep.nodes
        assert node.role == "postgres" and node.stop_signal == "SIGINT"
        state = load_state(Path(dep.workdir))
        assert state is not None and state.nodes[0].pid == node.pid
        if os.geteuid() == 0:
            assert _uid(node.pid) != 0, "PostgreSQL refuses root: it runs as postgres"
        pids = [node.pid, *_children(node.pid)]
        assert len(pids) > 1, "the postmaster has its background processes"

        # A client still connected: a smart shutdown (SIGTERM) would wait for it.
        conn = psycopg.connect(dep.url, autocommit=True)
        table = f"t_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'one'), (2, 'two')")
        rows = conn.execute(f"SELECT v FROM {table} ORDER BY k").fetchall()
        assert rows == [("one",), ("two",)]
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("fsync", "synchronous_commit", "full_page_writes", "listen_addresses")
        }
        assert settings == {
            "fsync": ("on",),
            "synchronous_commit": ("on",),
            "full_page_writes": ("on",),
            "listen_addresses": ("127.0.0.1",),
        }
        pids += [p for p in _children(node.pid) if p not in pids]  # the client's backend
    finally:
        t0 = time.monotonic()
        stop(dep)
        elapsed = time.monotonic() - t0
    assert elapsed < 10, "fast shutdown does not wait for the connected client"
    assert [p for p in pids if is_running(p)] == []
    assert not Path(dep.workdir).exists()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def test_cli_up_status_down_postgres() -> None:
    # Under the repo's run root, not pytest's tmp_path: the postgres user cannot enter
    # root's 0700 pytest directories.
    run = run_root() / f"cli-{uuid.uuid4().hex[:8]}"
    try:
        up = harness_cli(run, "up", "postgres")
        assert up.returncode == 0, up.stderr
        dep = load_state(run / "postgres")
        assert dep is not None and dep.url in up.stdout
        again = harness_cli(run, "up", "postgres")
        assert again.returncode == 0 and "reused" in again.stdout
        status = harness_cli(run, "status", "--check")
        assert "health: ok" in status.stdout and str(dep.nodes[0].pid) in status.stdout
        with psycopg.connect(dep.url, autocommit=True) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        down = harness_cli(run, "down")
        assert down.returncode == 0 and "postgres" in down.stdout
        deadline = time.monotonic() + 5
        while is_running(dep.nodes[0].pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_running(dep.nodes[0].pid)
        assert not (run / "postgres").exists()
    finally:
        harness_cli(run, "down")
        if run.is_dir():
            run.rmdir()
