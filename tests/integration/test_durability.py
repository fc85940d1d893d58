"""Durable mode: WAIT for replica acknowledgements in the write's own round trip."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from cluster.faults import pause, resume
from redis_cluster_saver import DurabilityError, ParentMissingError, RedisClusterSaver
from tests.support.counting import commands_in, recording
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

DURABLE = {"replicas": 1, "timeout_ms": 2000}


def put_one(saver: RedisClusterSaver, thread: str = "durable") -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = {"a": thread}
    cp["channel_versions"] = {"a": 1}
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    return saver.put(config, cp, {"step": 1}, {"a": 1})


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    with recording(monkeypatch) as packets:
        yield packets


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_durable_writes_wait_in_the_same_round_trip(
    request: pytest.FixtureRequest, topology: str, sent: list[bytes]
) -> None:
    dep = deployment_for(request, topology)
    options = saver_options(dep, durability=DURABLE)
    with RedisClusterSaver.from_conn_string(url_of(dep), **options) as saver:
        assert saver.capabilities is not None and saver.capabilities.replicas == 1
        put_one(saver)  # the first put of a thread may list it first; scripts get loaded
        sent.clear()
        stored = put_one(saver)
        packets = [commands_in(p) for p in sent]
        # the write, then WAIT, in one packet on one connection: MULTI/EXEC on one
        # endpoint (plain commands), one APPLY script on a cluster (lowering.py)
        one_endpoint = topology != "cluster"
        put = ["MULTI", "HSETNX", "DEL", "HSET", "SADD", "ZADD", "SADD", "EXEC"]
        assert packets == [[*(put if one_endpoint else ["EVAL"]), "WAIT"]], packets
        sent.clear()
        saver.put_writes(stored, [("a", 1), ("b", 2)], "task")
        writes = ["MULTI", "SADD", "HSETNX", "HSETNX", "EXEC"] if one_endpoint else ["EVAL"]
        assert [commands_in(p) for p in sent] == [[*writes, "WAIT"]]
        tup = saver.get_tuple(stored)
        assert tup is not None and len(tup.pending_writes or []) == 2


@pytest.mark.parametrize(
    ("topology", "durability"),
    [("standalone", DURABLE), ("sentinel", {"replicas": 2, "timeout_ms": 100}), ("proxy", DURABLE)],
)
def test_durable_mode_is_refused_where_it_cannot_be_honoured(
    request: pytest.FixtureRequest, topology: str, durability: dict[str, int]
) -> None:
    dep = deployment_for(request, topology)
    options = saver_options(dep, durability=durability)
    saver = RedisClusterSaver(url_of(dep), **options)
    with pytest.raises(ValueError, match="durable mode cannot be honoured"):
        saver.setup()
    saver.close()


@pytest.mark.parametrize("bad", [{"replicas": 0}, {"replicas": "1"}, {"timeout_ms": -5}, {"x": 1}])
def test_bad_durability_options(standalone: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="durability"):
        RedisClusterSaver(standalone.url, durability=bad)


def test_too_few_acknowledgements_raise_a_clear_error(fresh_sentinel: Any) -> None:
    dep = fresh_sentinel
    patient = saver_options(dep, durability=DURABLE)
    hasty = {**patient, "durability": {"replicas": 1, "timeout_ms": 300}}
    with (
        RedisClusterSaver.from_conn_string(url_of(dep), **patient) as steady,
        RedisClusterSaver.from_conn_string(url_of(dep), **hasty) as saver,
    ):
        # a replica fresh from its first sync may take longer than 300 ms on a busy
        # machine: the acknowledged writes around the pause get the patient timeout
        put_one(steady, "before")
        replica = dep.replicas[0]
        pause(replica)
        try:
            with pytest.raises(DurabilityError, match="may be lost") as caught:
                put_one(saver, "during")
            assert caught.value.acknowledged == 0 and caught.value.wanted == 1
        finally:
            resume(replica)
        put_one(steady, "after")  # acknowledged again once the replica is back
        assert (
            steady.get_tuple({"configurable": {"thread_id": "during", "checkpoint_ns": ""}})
            is not None
        )  # on the primary all along, as the error says


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_a_durable_put_whose_parent_is_gone_writes_nothing(
    request: pytest.FixtureRequest, topology: str
) -> None:
    """A durable write never stores a checkpoint with a hole in its history: its parent
    was deleted (as here), or refused and lost in a failover after a read returned it
    (tests/integration/test_partitions.py). Without durability the thread starts again."""
    dep = deployment_for(request, topology)
    options = saver_options(dep, durability=DURABLE)
    with (
        RedisClusterSaver.from_conn_string(url_of(dep), **options) as saver,
        RedisClusterSaver.from_conn_string(url_of(dep), key_prefix=options["key_prefix"]) as plain,
    ):
        parent = put_one(saver, "lineage")
        saver.delete_thread("lineage")
        cp = empty_checkpoint()
        cp["channel_values"] = {"a": "next"}
        cp["channel_versions"] = {"a": 2}
        with pytest.raises(ParentMissingError, match="its parent") as raised:
            saver.put(parent, cp, {"step": 2}, {"a": 2})
        assert raised.value.parent == parent["configurable"]["checkpoint_id"]
        assert saver.get_tuple({"configurable": {"thread_id": "lineage"}}) is None
        assert list(saver.list(None)) == []
        # the parent there, the same put goes through
        again = put_one(saver, "lineage")
        assert saver.get_tuple(saver.put(again, cp, {"step": 2}, {"a": 2})) is not None
        saver.delete_thread("lineage")
        stored = plain.put(again, cp, {"step": 2}, {"a": 2})  # not durable: written
        assert plain.get_tuple(stored) is not None
