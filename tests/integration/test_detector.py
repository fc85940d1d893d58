"""The detector on every topology, the modes it picks, and the run-time switch."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.plan import WriteMode
from tests.support.counting import commands_in, recording
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

EXPECTED = {
    # topology: (server, topology, MULTI, scripts, search, search on all shards, json, mode)
    "standalone": ("valkey", "standalone", True, True, True, True, True, "transaction"),
    "plain": ("redis", "standalone", True, True, False, None, False, "transaction"),
    "redis62": ("redis", "standalone", True, True, False, None, False, "transaction"),
    "cluster": ("valkey", "cluster", True, True, True, False, True, "transaction"),
    "sentinel": ("valkey", "sentinel", True, True, None, None, None, "transaction"),
    "proxy": ("unknown", "proxy", False, True, False, None, False, "script"),
}


@pytest.mark.parametrize("topology", list(EXPECTED))
def test_detector_findings(request: pytest.FixtureRequest, topology: str) -> None:
    deployment = deployment_for(request, topology)
    with RedisClusterSaver.from_conn_string(url_of(deployment), **saver_options(deployment)) as s:
        caps = s.capabilities
        assert caps is not None
        server, topo, multi, lua, search, all_shards, json, mode = EXPECTED[topology]
        assert (caps.server, caps.topology) == (server, topo), caps
        assert (caps.transactions, caps.scripts) == (multi, lua), caps
        if search is not None:  # the sentinel group's servers may or may not carry modules
            assert (caps.search, caps.search_all_shards, caps.json) == (search, all_shards, json)
        assert s.ops.write_mode.value == mode
        if topology == "plain":
            assert caps.version.startswith("7.")
        if topology == "redis62":
            assert caps.version.startswith("6.2.")


def one_round(saver: RedisClusterSaver) -> None:
    """Every operation once, on a thread of its own."""
    thread = f"modes-{uuid.uuid4().hex[:6]}"
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    cp = empty_checkpoint()
    cp["channel_values"] = {"a": 1}
    cp["channel_versions"] = {"a": 1}
    stored = saver.put(config, cp, {"step": 1}, {"a": 1})
    saver.put_writes(stored, [("a", 2), ("b", 3)], "task")
    tup = saver.get_tuple(config)
    assert tup is not None and tup.checkpoint["channel_values"] == {"a": 1}
    assert len(tup.pending_writes or []) == 2
    assert len(list(saver.list(config, filter={"step": 1}))) == 1
    saver.copy_thread(thread, thread + "-copy")
    saver.prune([thread + "-copy"], keep_last=1)
    saver.delete_for_runs(["nope"])
    saver.delete_thread(thread + "-copy")
    assert saver.get_tuple({"configurable": {"thread_id": thread + "-copy"}}) is None


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    with recording(monkeypatch) as packets:
        yield packets


def test_forced_per_key_mode_sends_no_multi_and_no_script(
    redis_cluster: Any, sent: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    options = saver_options(redis_cluster, transactions=False, scripts=False)
    with (
        caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
        RedisClusterSaver.from_conn_string(redis_cluster.url, **options) as saver,
    ):
        assert saver.ops.write_mode is WriteMode.PER_KEY
        sent.clear()
        one_round(saver)
        one_round(saver)
    names = {name for packet in sent for name in commands_in(packet)}
    assert not names & {"MULTI", "EXEC", "EVAL", "EVALSHA"}, names
    warnings = [r for r in caplog.records if "per-key" in r.getMessage()]
    assert len(warnings) == 1 and "forced by options" in warnings[0].getMessage()


def test_proxy_writes_are_single_scripts(proxy: Any, sent: list[bytes]) -> None:
    with RedisClusterSaver.from_conn_string(proxy.url, **saver_options(proxy)) as saver:
        sent.clear()
        one_round(saver)
    names = [commands_in(packet) for packet in sent]
    assert not any("MULTI" in n for n in names)
    assert any(n == ["EVALSHA"] or n == ["EVAL"] for n in names)


def test_a_refusal_mid_flight_switches_mode_once_and_retries(
    standalone: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The detector saw scripts and MULTI work; later the server refuses scripts
    (here an ACL change, as a proxy put in front would), and later MULTI too: each
    time the operation is retried in the mode the server now allows (writes as
    MULTI/EXEC, then as plain commands), and a warning says why, once per switch."""
    admin = redis.Redis.from_url(standalone.url)
    user = f"flip{uuid.uuid4().hex[:6]}"
    admin.acl_setuser(user, enabled=True, passwords=["+pw"], commands=["+@all"], keys=["*"])
    options = saver_options(standalone, connection_args={"username": user, "password": "pw"})
    try:
        with (
            caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
            RedisClusterSaver.from_conn_string(standalone.url, **options) as saver,
        ):
            assert saver.ops.write_mode is WriteMode.TRANSACTION and saver.ops.mode.scripts
            admin.acl_setuser(user, enabled=True, categories=["-@scripting"])
            one_round(saver)
            one_round(saver)
            assert saver.ops.write_mode is WriteMode.TRANSACTION
            assert saver.ops.mode.scripts is False
            admin.acl_setuser(user, enabled=True, commands=["-multi", "-exec"])
            one_round(saver)
            one_round(saver)
            assert saver.ops.write_mode is WriteMode.PER_KEY
        warnings = [r.getMessage() for r in caplog.records if "mid-flight" in r.getMessage()]
        assert len(warnings) == 2, warnings
        assert "MULTI/EXEC" in warnings[0] and "per-key" in warnings[1], warnings
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.parametrize("topology", ["proxy", "cluster"])
def test_doctor_prints_a_table(request: pytest.FixtureRequest, topology: str) -> None:
    deployment = deployment_for(request, topology)
    done = subprocess.run(
        [sys.executable, "-m", "redis_cluster_saver", "doctor", url_of(deployment)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    table = dict(
        line.strip().split("  ", 1) for line in done.stdout.splitlines()[1:] if "note:" not in line
    )
    table = {k.strip(): v.strip() for k, v in table.items()}
    assert table["topology"] == topology
    assert table["MULTI/EXEC on one slot"] == ("no" if topology == "proxy" else "yes")
    assert table["writes"] == ("script" if topology == "proxy" else "transaction")
    assert table["reads"] == "script"


def test_doctor_fails_clearly_on_an_unreachable_server() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redis_cluster_saver", "doctor", "redis://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot use redis://127.0.0.1:1" in done.stderr
