"""One round trip per operation, counted at the socket; one slot per thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from examples.graph import run_demo_graph
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.plan import WriteMode
from tests.support.counting import commands_in, recording

from .conftest import saver_options

HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT", "READONLY"}
"""What a connection new to the client sends first."""


def step(i: int, parent: str | None) -> tuple[Any, Any, Any]:
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": list(range(i)), "flag": i % 2}
    cp["channel_versions"] = {"messages": i + 1, "flag": 1}
    config: Any = {"configurable": {"thread_id": "rt-thread", "checkpoint_ns": ""}}
    if parent:
        config["configurable"]["checkpoint_id"] = parent
    return config, cp, {"source": "loop", "step": i}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    with recording(monkeypatch) as packets:
        yield packets


def trips(sent: list[bytes], fn: Callable[[], Any]) -> list[list[str]]:
    sent.clear()
    fn()
    return [commands_in(p) for p in sent]


def plain_write(saver: Any, *commands: str) -> list[str]:
    """A write of plain commands as it goes on the wire: MULTI/EXEC in one packet on
    one endpoint where MULTI runs, else one same-slot APPLY script (lowering.py)."""
    mode = saver.shell.mode
    if mode.one_endpoint and mode.writes is WriteMode.TRANSACTION:
        return ["MULTI", *commands, "EXEC"]
    return ["EVALSHA"]


def test_each_sync_operation_is_one_round_trip(
    sync_saver: RedisClusterSaver, sent: list[bytes]
) -> None:
    saver = sync_saver
    config, cp, md = step(0, None)
    saver.put(config, cp, md, {"messages": 1, "flag": 1})  # the first put may list the thread
    config, cp, md = step(1, None)
    saver.put(config, cp, md, {"messages": 2})  # the server learns the script
    parent = None
    for i in range(2, 5):
        config, cp, md = step(i, parent)
        trip = trips(sent, lambda: saver.put(config, cp, md, {"messages": i + 1}))  # noqa: B023
        # one same-slot script, as the async saver's: it checks that the value of
        # "flag" that the checkpoint inherits is still stored
        assert trip == [["EVALSHA"]], trip
        parent = cp["id"]
        stored = {"configurable": {**config["configurable"], "checkpoint_id": cp["id"]}}
        trip = trips(sent, lambda: saver.put_writes(stored, [("a", 1), ("b", 2)], "t"))  # noqa: B023
        assert trip == [plain_write(saver, "SADD", "HSETNX", "HSETNX")], trip
    latest: Any = {"configurable": {"thread_id": "rt-thread", "checkpoint_ns": ""}}
    saver.get_tuple(latest)  # the server learns the script (EVALSHA, then EVAL once)
    assert trips(sent, lambda: saver.get_tuple(latest)) == [["EVALSHA"]]
    assert trips(sent, lambda: saver.get_tuple(stored)) == [["EVALSHA"]]
    assert trips(sent, lambda: list(saver.list(latest, limit=10))) == [["EVALSHA"]]
    tup = saver.get_tuple(latest)
    assert tup is not None and tup.checkpoint["channel_values"]["messages"] == [0, 1, 2, 3]
    assert len(tup.pending_writes or []) == 2


async def test_each_async_operation_is_one_round_trip(
    async_saver: AsyncRedisClusterSaver, sent: list[bytes]
) -> None:
    saver = async_saver
    config, cp, md = step(0, None)
    await saver.aput(config, cp, md, {"messages": 1, "flag": 1})
    config, cp, md = step(1, cp["id"])
    sent.clear()
    stored = await saver.aput(config, cp, md, {"messages": 2})
    # one same-slot script (see lowering.py)
    assert [commands_in(p)[0] for p in sent] == ["EVALSHA"]
    await saver.aget_tuple(stored)  # the server learns the script
    sent.clear()
    await saver.aput_writes(stored, [("a", 1)], "task")
    assert await saver.aget_tuple(stored) is not None
    assert len([t async for t in saver.alist(stored, limit=10)]) == 1
    writes = commands_in(sent[0])
    assert writes == plain_write(saver, "SADD", "HSETNX") and len(sent) == 3, [
        commands_in(p) for p in sent
    ]
    assert [commands_in(p) for p in sent[1:]] == [["EVALSHA"], ["EVALSHA"]]


def operations_on(thread: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The same steps of a thread: (method, arguments)."""
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    first = empty_checkpoint()
    first["channel_versions"] = {"messages": 1}
    first["channel_values"] = {"messages": [1]}
    second = empty_checkpoint()
    second["channel_versions"] = {"messages": 2}
    second["channel_values"] = {"messages": [1, 2]}
    stored = {"configurable": {**config["configurable"], "checkpoint_id": first["id"]}}
    return [
        ("put", (config, first, {"step": 0}, {"messages": 1})),
        ("put_writes", (stored, [("a", 1), ("b", 2)], "task")),
        ("put", (stored, second, {"step": 1}, {"messages": 2})),
        ("get_tuple", (config,)),
        ("get_tuple", (stored,)),
        ("delete_thread", (thread,)),
    ]


async def test_sync_and_async_savers_send_the_same_commands(
    deployment: Any, sent: list[bytes]
) -> None:
    """One plan, one lowering: the same operations go on the wire as the same
    commands, trip for trip, whichever saver runs them."""
    options = saver_options(deployment)

    def sent_now() -> list[list[str]]:
        return [c for c in (commands_in(p) for p in sent) if not set(c) <= HANDSHAKE]

    seen: dict[str, list[list[str]]] = {}
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        for _ in range(2):  # the first round: scripts learnt, pools open
            sent.clear()
            for name, args in operations_on("same"):
                getattr(saver, name)(*args)
        seen["sync"] = sent_now()
    async with AsyncRedisClusterSaver.from_conn_string(deployment.url, **options) as asaver:
        for _ in range(2):
            sent.clear()
            for name, args in operations_on("same"):
                await getattr(asaver, "a" + name)(*args)
        seen["async"] = sent_now()
    assert seen["sync"] == seen["async"]
    assert len(seen["sync"]) >= 6


def test_every_key_of_a_thread_is_on_one_slot(redis_cluster: Any) -> None:
    """After a real graph run with a subgraph, CLUSTER KEYSLOT agrees for every key."""
    options = saver_options(redis_cluster)
    prefix = options["key_prefix"]
    with RedisClusterSaver.from_conn_string(redis_cluster.url, **options) as saver:
        final = run_demo_graph(saver, "slot {test} thread")
        assert final.values["approved"] is True
        keys: list[bytes] = []
        for node in saver.client.get_primaries():
            conn = saver.client.get_redis_connection(node)
            keys += [
                k for k in conn.scan_iter(match=f"{prefix}:*", count=1000) if b":dir:" not in k
            ]
        child_ns = [k for k in keys if b"review" in k]
        assert len(keys) > 10 and child_ns, keys
        slots = {saver.client.cluster_keyslot(k) for k in keys}
        assert len(slots) == 1, slots


async def test_async_cluster_script_calls_go_straight_to_their_node(
    redis_cluster: Any, sent: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the asyncio cluster client a script call (or a directory entry's SADD) is
    one packet on a connection of the primary owning its slot, not through the
    client's execute_command; where the slot map is stale (MOVED) the call goes again
    through the client, which follows the redirect and mends the map, and the next
    call goes straight again."""
    options = saver_options(redis_cluster)
    async with AsyncRedisClusterSaver.from_conn_string(redis_cluster.url, **options) as saver:
        client = saver.client
        through_client: list[Any] = []
        execute = client.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            through_client.append(args[0])
            return await execute(*args, **kwargs)

        monkeypatch.setattr(client, "execute_command", counted)
        config, cp, md = step(0, None)
        sent.clear()
        stored = await saver.aput(config, cp, md, {"messages": 1, "flag": 1})
        assert [commands_in(p)[0] for p in sent].count("SADD") == 2  # listed before and after
        await saver.aget_tuple(stored)  # the server may learn the read script (EVAL)
        assert through_client == []
        sent.clear()
        config, cp, md = step(1, cp["id"])
        stored = await saver.aput(config, cp, md, {"messages": 2})
        await saver.aput_writes(stored, [("a", 1)], "task")
        tup = await saver.aget_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"]["messages"] == [0]
        assert tup.pending_writes == [("task", "a", 1)]
        assert through_client == []
        assert [commands_in(p) for p in sent] == [["EVALSHA"]] * 3

        key = saver.ops.layout.thread("rt-thread").namespaces
        slot = client.keyslot(key)
        owner = client.get_node_from_key(key)
        other = next(n for n in client.get_primaries() if n.name != owner.name)
        client.nodes_manager.slots_cache[slot] = [other]  # as after a missed slot move
        sent.clear()
        config, cp, md = step(2, cp["id"])
        stored = await saver.aput(config, cp, md, {"messages": 3})
        assert through_client == ["EVALSHA"]  # the direct call met MOVED
        assert client.get_node_from_key(key).name == owner.name  # the client mended the map
        calls = [c for p in sent for c in commands_in(p) if c not in HANDSHAKE]
        assert calls == ["EVALSHA"] * 3  # other, other (through the client), owner
        through_client.clear()
        tup = await saver.aget_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"]["messages"] == [0, 1]
        assert through_client == []
