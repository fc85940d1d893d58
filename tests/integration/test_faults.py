"""Nothing lost: primaries killed under load, resharding under load, a paused
primary, a connection cut inside a transaction.

The load tests print one row each (the README's table of measured figures comes from
`python -m benchmarks.soak`, the longer version of the same runs).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.crc import key_slot
from redis.exceptions import TimeoutError
from redis.retry import Retry

from cluster.faults import kill_primary, migrate_slot, pause, resume, slot_owner, wait_for_failover
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.plan import Command
from tests.support.faultload import lost, run_load
from tests.support.servers import url_of

from .conftest import saver_options

WRITERS, THREADS, SECONDS = 4, 24, 6.0
MODES = {"default": {}, "durable": {"durability": {"replicas": 1, "timeout_ms": 1000}}}


def killer(dep: Any, figures: dict[str, float]) -> Any:
    def fault() -> None:
        began = time.monotonic()
        victim = kill_primary(dep, 0)
        wait_for_failover(dep, victim)
        figures["failover_s"] = time.monotonic() - began

    return fault


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_primary_killed_under_load(
    request: pytest.FixtureRequest, topology: str, mode: str
) -> None:
    dep = request.getfixturevalue(f"fresh_{topology}")
    options = saver_options(dep, failover_wait=20, **MODES[mode])
    figures: dict[str, float] = {}
    tally = run_load(
        url_of(dep),
        options,
        writers=WRITERS,
        threads=THREADS,
        seconds=SECONDS,
        fault=killer(dep, figures),
        fault_at=SECONDS / 3,
    )
    # read back without durable mode: after the failover no primary has a replica left
    reader = {k: v for k, v in options.items() if k != "durability"}
    gone = lost(url_of(dep), reader, tally)
    print(
        f"\n| {topology} | {mode} | {WRITERS} | {SECONDS:.0f} s | {len(tally.acknowledged)} | "
        f"{len(gone)} | {tally.errored} | {tally.durability_errors} | "
        f"{figures.get('failover_s', float('nan')):.1f} s | {tally.error_kinds} |"
    )
    assert len(tally.acknowledged) > 100
    assert "failover_s" in figures
    if mode == "durable":
        assert gone == [], gone[:5]
    assert tally.errored == 0, tally.error_kinds  # failovers are waited out, not reported


def test_resharding_a_busy_thread_loses_nothing(fresh_cluster: Any) -> None:
    dep = fresh_cluster
    options = saver_options(dep)
    thread = "busy"
    errors: list[BaseException] = []
    written: list[tuple[str, int]] = []
    stop = threading.Event()

    def busy() -> None:
        with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
            config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
            n = 0
            while not stop.is_set():
                cp = empty_checkpoint()
                cp["channel_values"] = {"n": n}
                cp["channel_versions"] = {"n": n + 1}
                try:
                    config = saver.put(config, cp, {"step": n}, {"n": n + 1})
                    saver.put_writes(config, [("n", n)], "t")
                    got = saver.get_tuple(config)
                    assert got is not None and got.checkpoint["channel_values"] == {"n": n}
                    assert len(list(saver.list(config, limit=3))) >= 1
                except BaseException as exc:
                    errors.append(exc)
                    return
                written.append((cp["id"], n))
                n += 1

    worker = threading.Thread(target=busy)
    worker.start()
    time.sleep(0.5)
    slot = key_slot(
        RedisClusterSaver(dep.url, **options).ops.layout.thread(thread).namespaces.encode()
    )
    owner = slot_owner(dep, slot)
    target = next(p for p in dep.primaries if p.port != owner.port)
    migrate_slot(dep, slot, target)
    time.sleep(0.5)
    stop.set()
    worker.join()
    assert errors == []
    assert slot_owner(dep, slot).port == target.port
    with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        ids = [t.checkpoint["id"] for t in saver.list({"configurable": {"thread_id": thread}})]
        assert sorted(ids) == sorted(cid for cid, _ in written) and len(ids) > 20


def test_a_paused_primary_times_out_clearly_and_recovers(standalone: Any) -> None:
    args = {"socket_timeout": 0.5, "retry": Retry(NoBackoff(), 0)}
    options = saver_options(standalone, connection_args=args)
    node = standalone.nodes[0]
    config: Any = {"configurable": {"thread_id": "paused", "checkpoint_ns": ""}}
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        saver.put(config, empty_checkpoint(), {}, {})
        pause(node)
        try:
            began = time.monotonic()
            with pytest.raises(TimeoutError, match=r"[Tt]imeout"):
                saver.put(config, empty_checkpoint(), {}, {})
            assert time.monotonic() - began < 1.5
        finally:
            resume(node)
        assert saver.put(config, empty_checkpoint(), {}, {})
        assert len(list(saver.list(config))) >= 2  # the timed-out put may or may not be there


def test_a_connection_cut_inside_a_transaction_leaves_no_partial_checkpoint(
    standalone: Any,
) -> None:
    """Sends a put's MULTI and every command of it, but not EXEC, then drops the
    socket: the server discards the transaction, the saver sees nothing of it."""
    options = saver_options(standalone)
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        config: Any = {"configurable": {"thread_id": "cut", "checkpoint_ns": ""}}
        first = empty_checkpoint()
        first["channel_values"] = {"a": "old"}
        first["channel_versions"] = {"a": 1}
        stored = saver.put(config, first, {}, {"a": 1})
        second = empty_checkpoint()
        second["channel_values"] = {"a": "new"}
        second["channel_versions"] = {"a": 2}
        trip = next(saver.ops.put(stored, second, {}, {"a": 2}))
        assert trip.atomic
        commands = [("MULTI",)] + [c.args for c in trip.calls if isinstance(c, Command)]
        host, port = standalone.url.split("//")[1].split(":")
        packed = b"".join(Connection().pack_commands(commands))
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(packed)
            raw.recv(65536)
        latest = saver.get_tuple(config)
        assert latest is not None and latest.checkpoint["id"] == first["id"]
        assert [t.checkpoint["id"] for t in saver.list(config)] == [first["id"]]
        assert not saver.client.exists(saver.ops.layout.thread("cut").checkpoint("", second["id"]))
