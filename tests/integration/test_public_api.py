"""The public surface as LangGraph and its users use it: sync calls on the async
saver from worker threads, a serializer assigned after construction, the exported
option types, listing threads, clients handed in closed, and a clean close."""

from __future__ import annotations

import asyncio
import gc
import operator
import warnings
from typing import Annotated, Any, TypedDict

import pytest
import redis
import redis.cluster
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt

import redis_cluster_saver
from redis_cluster_saver import (
    TTL,
    AsyncRedisClusterSaver,
    Capabilities,
    KeyLayout,
    RedisClusterSaver,
)
from tests.support.servers import keys_under, primaries

from .conftest import saver_options

SECRET = "PLAINTEXT-SECRET"


def cfg(thread: str, ns: str = "") -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}


def checkpoint(values: dict[str, Any]) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = dict.fromkeys(values, 1)
    return cp


def stored_values(deployment: Any, prefix: str) -> list[bytes]:
    """Every byte string stored under ``prefix``, whatever the key's type."""
    cluster = deployment.topology == "cluster"
    client: Any = (
        redis.cluster.RedisCluster.from_url(deployment.url) if cluster else primaries(deployment)[0]
    )
    found: list[bytes] = []
    try:
        for key in keys_under(deployment, prefix):
            kind = client.type(key)
            if kind == b"hash":
                for field, value in client.hgetall(key).items():
                    found += [field, value]
            elif kind == b"string":
                found.append(client.get(key))
            elif kind in (b"set", b"zset", b"list"):
                found += list(
                    client.smembers(key)
                    if kind == b"set"
                    else client.zrange(key, 0, -1)
                    if kind == b"zset"
                    else client.lrange(key, 0, -1)
                )
            else:
                raise AssertionError(f"unexpected key type {kind!r} of {key!r}")
    finally:
        client.close()
    return found


# ---- sync methods of the async saver -------------------------------------------


async def test_sync_methods_of_the_async_saver_run_on_its_loop_from_other_threads(
    deployment: Any,
) -> None:
    async with AsyncRedisClusterSaver.from_conn_string(
        deployment.url, **saver_options(deployment)
    ) as saver:

        def from_a_worker() -> dict[str, Any]:
            saver.setup()
            stored = saver.put(cfg("w"), checkpoint({"a": 1}), {"run_id": "r1"}, {"a": 1})
            saver.put_writes(stored, [("a", 2)], "task")
            got = saver.get_tuple(stored)
            listed = list(saver.list(cfg("w")))
            history = saver.get_delta_channel_history(config=stored, channels=["a"])
            saver.copy_thread("w", "copy")
            copied = saver.get_tuple(cfg("copy"))
            threads = saver.list_threads()
            saver.prune(["copy"], strategy="delete")
            saver.delete_for_runs(["r1"])
            after_runs = saver.get_tuple(cfg("w"))
            saver.delete_thread("w")
            return {
                "got": got,
                "listed": listed,
                "history": history,
                "copied": copied,
                "threads": threads,
                "after_runs": after_runs,
                "gone": saver.get_tuple(cfg("w")),
            }

        seen = await asyncio.to_thread(from_a_worker)
        assert seen["got"] is not None and seen["got"].checkpoint["channel_values"] == {"a": 1}
        assert seen["got"].pending_writes == [("task", "a", 2)]
        assert [t.checkpoint["id"] for t in seen["listed"]] == [seen["got"].checkpoint["id"]]
        assert set(seen["history"]) == {"a"}
        assert seen["copied"] is not None
        assert seen["threads"] == ["copy", "w"]
        assert seen["after_runs"] is None and seen["gone"] is None
        assert await saver.aget_tuple(cfg("copy")) is None


SYNC_CALLS: dict[str, Any] = {
    "setup": lambda s: s.setup(),
    "get_tuple": lambda s: s.get_tuple(cfg("t")),
    "get": lambda s: s.get(cfg("t")),
    "list": lambda s: list(s.list(cfg("t"))),
    "put": lambda s: s.put(cfg("t"), checkpoint({}), {}, {}),
    "put_writes": lambda s: s.put_writes({**cfg("t"), "checkpoint_id": "x"}, [], "task"),
    "delete_thread": lambda s: s.delete_thread("t"),
    "delete_for_runs": lambda s: s.delete_for_runs(["r"]),
    "copy_thread": lambda s: s.copy_thread("t", "u"),
    "prune": lambda s: s.prune(["t"]),
    "get_delta_channel_history": lambda s: s.get_delta_channel_history(
        config=cfg("t"), channels=["a"]
    ),
    "list_threads": lambda s: s.list_threads(),
}


async def test_sync_methods_of_the_async_saver_refuse_its_own_loop(standalone: Any) -> None:
    async with AsyncRedisClusterSaver.from_conn_string(
        standalone.url, **saver_options(standalone)
    ) as saver:
        for name, call in SYNC_CALLS.items():
            wanted = "aget_tuple" if name == "get" else f"a{name}"
            with pytest.raises(asyncio.InvalidStateError, match=wanted):
                call(saver)


def test_sync_methods_of_an_async_saver_whose_loop_is_not_running_say_so(
    standalone: Any,
) -> None:
    saver = AsyncRedisClusterSaver(standalone.url, **saver_options(standalone))
    with pytest.raises(asyncio.InvalidStateError, match="event loop"):
        saver.get_tuple(cfg("t"))


class SubState(TypedDict):
    log: Annotated[list[str], operator.add]


async def test_an_async_graph_whose_sync_node_invokes_a_subgraph(deployment: Any) -> None:
    """LangGraph runs a sync node in a worker thread; a subgraph it invokes inherits
    the async saver and calls its sync methods from there."""

    def ask(state: SubState) -> SubState:
        answer = interrupt("question")
        return {"log": [f"answer {answer}"]}

    sub = (
        StateGraph(SubState)
        .add_node("first", lambda s: {"log": ["sub first"]})
        .add_node("ask", ask)
        .add_edge(START, "first")
        .add_edge("first", "ask")
        .compile()
    )

    def call_sub(state: SubState) -> Any:
        return sub.invoke(state)

    async with AsyncRedisClusterSaver.from_conn_string(
        deployment.url, **saver_options(deployment)
    ) as saver:
        graph = (
            StateGraph(SubState)
            .add_node("outer", call_sub)
            .add_edge(START, "outer")
            .compile(checkpointer=saver)
        )
        config: Any = {"configurable": {"thread_id": "sub"}}
        first = await graph.ainvoke({"log": ["start"]}, config)
        assert "__interrupt__" in first
        done = await graph.ainvoke(Command(resume="yes"), config)
        assert done["log"][-1] == "answer yes"
        state = await graph.aget_state(config)
        assert not state.next


# ---- the serializer -------------------------------------------------------------


def aes() -> EncryptedSerializer:
    return EncryptedSerializer.from_pycryptodome_aes(key=b"1234567890123456")


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_a_serializer_assigned_after_construction_is_used(
    deployment: Any, style: str
) -> None:
    options = saver_options(deployment)
    values = {"secret": SECRET, "nested": {"also": [SECRET]}}
    if style == "sync":
        with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
            saver.serde = aes()
            stored = saver.put(cfg("enc"), checkpoint(values), {}, dict.fromkeys(values, 1))
            saver.put_writes(stored, [("secret", SECRET)], "task")
            got = saver.get_tuple(stored)
    else:
        async with AsyncRedisClusterSaver.from_conn_string(deployment.url, **options) as asaver:
            asaver.serde = aes()
            stored = await asaver.aput(cfg("enc"), checkpoint(values), {}, dict.fromkeys(values, 1))
            await asaver.aput_writes(stored, [("secret", SECRET)], "task")
            got = await asaver.aget_tuple(stored)
    assert got is not None and got.checkpoint["channel_values"] == values
    assert got.pending_writes == [("task", "secret", SECRET)]
    raw = stored_values(deployment, options["key_prefix"])
    assert raw and not [v for v in raw if SECRET.encode() in v]
    with (
        RedisClusterSaver.from_conn_string(deployment.url, **options) as plain,
        pytest.raises(Exception),  # noqa: B017 - the default serializer cannot read it
    ):
        plain.get_tuple(stored)


def test_an_allowlisted_clone_has_its_own_serializer(standalone: Any) -> None:
    inner = JsonPlusSerializer(allowed_msgpack_modules=[("some.other", "Type")])
    with RedisClusterSaver.from_conn_string(standalone.url, **saver_options(standalone)) as saver:
        saver.serde = EncryptedSerializer.from_pycryptodome_aes(serde=inner, key=b"0" * 16)
        before = saver.serde
        clone = saver.with_allowlist([("some.module", "Class")])
        assert clone is not saver and clone.serde is not before
        assert saver.serde is before
        stored = clone.put(cfg("c"), checkpoint({"k": SECRET}), {}, {"k": 1})
        got = saver.get_tuple(stored)
        assert got is not None and got.checkpoint["channel_values"] == {"k": SECRET}


class FaultySerializer(JsonPlusSerializer):
    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        raise ValueError("Faulty serializer")


def test_a_serializer_error_reaches_the_caller_as_raised(standalone: Any) -> None:
    """As on LangGraph's savers: the serializer's own exception, here with a note
    naming what it refused."""
    options = saver_options(standalone, serde=FaultySerializer())
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        with pytest.raises(ValueError, match="Faulty serializer") as raised:
            saver.put(cfg("faulty"), checkpoint({"k": 1}), {}, {"k": 1})
        assert "channel 'k'" in " ".join(getattr(raised.value, "__notes__", []))
        assert saver.get_tuple(cfg("faulty")) is None


# ---- option types, exports ------------------------------------------------------


def test_ttl_and_key_layout_objects_are_accepted(standalone: Any) -> None:
    prefix = saver_options(standalone)["key_prefix"]
    options = saver_options(standalone, key_prefix=KeyLayout(prefix), ttl=TTL(5))
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        saver.put(cfg("ttl"), checkpoint({"k": 1}), {}, {"k": 1})
        assert saver.ops.layout == KeyLayout(prefix)
    keys = keys_under(standalone, prefix)
    client = primaries(standalone)[0]
    try:
        assert keys and all(0 < client.pttl(k) <= 5 * 60_000 for k in keys if b":dir:" not in k)
    finally:
        client.close()
    with pytest.raises(ValueError, match="default_ttl"):
        RedisClusterSaver(standalone.url, ttl=TTL(-1))


def test_every_type_the_saver_returns_or_takes_is_exported(standalone: Any) -> None:
    assert {"Capabilities", "TTL", "KeyLayout"} <= set(redis_cluster_saver.__all__)
    with RedisClusterSaver.from_conn_string(standalone.url, **saver_options(standalone)) as saver:
        assert isinstance(saver.capabilities, Capabilities)


# ---- listing threads --------------------------------------------------------------


async def test_threads_are_listed_in_pages(deployment: Any) -> None:
    options = saver_options(deployment)
    names = [f"thread-{i:02d}" for i in range(12)]
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        for name in names:
            saver.put(cfg(name), checkpoint({}), {}, {})
        assert saver.list_threads() == names
        assert saver.list_threads(limit=5) == names[:5]
        assert saver.list_threads(limit=5, offset=10) == names[10:]
        assert saver.list_threads(offset=12) == []
        for bad in ({"limit": -1}, {"offset": -1}, {"limit": "3"}, {"offset": True}):
            with pytest.raises(ValueError):
                saver.list_threads(**bad)
    async with AsyncRedisClusterSaver.from_conn_string(deployment.url, **options) as asaver:
        assert await asaver.alist_threads(limit=3, offset=1) == names[1:4]
        await asaver.adelete_thread(names[0])
        assert await asaver.alist_threads(limit=1) == [names[1]]


# ---- clients handed in ----------------------------------------------------------


def test_a_closed_cluster_client_is_refused_with_a_clear_error(redis_cluster: Any) -> None:
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    client.close()
    with pytest.raises(ValueError, match="closed"):
        RedisClusterSaver(redis_client=client)


def test_a_cluster_client_closed_while_in_use_gives_a_clear_error(redis_cluster: Any) -> None:
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    saver = RedisClusterSaver(redis_client=client, **saver_options(redis_cluster))
    saver.put(cfg("before"), checkpoint({}), {}, {})
    client.close()
    with pytest.raises(redis_cluster_saver.SaverError, match="closed"):
        saver.put(cfg("after"), checkpoint({}), {}, {})


async def test_closing_the_async_saver_closes_its_per_node_clients(redis_cluster: Any) -> None:
    options = saver_options(redis_cluster, durability={"replicas": 1, "timeout_ms": 2000})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        saver = AsyncRedisClusterSaver(redis_cluster.url, **options)
        for i in range(6):  # threads on several primaries
            await saver.aput(cfg(f"durable-{i}"), checkpoint({}), {}, {})
        assert saver.shell.nodes
        await saver.aclose()
        del saver
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


async def test_durable_writes_follow_a_moved_slot_and_leave_no_client_open(
    fresh_cluster: Any,
) -> None:
    """The per-node clients forgotten when the slot map moves are closed too: at
    once when idle, else when their last trip ends."""
    from redis.crc import key_slot

    from cluster.faults import migrate_slot, slot_owner

    dep = fresh_cluster
    options = saver_options(dep, durability={"replicas": 1, "timeout_ms": 2000})
    slot = key_slot(KeyLayout(options["key_prefix"]).thread("moving").namespaces.encode())
    target = next(p for p in dep.primaries if p.port != slot_owner(dep, slot).port)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        saver = AsyncRedisClusterSaver(dep.url, **options)
        await saver.aput(cfg("moving"), checkpoint({}), {}, {})
        moving = asyncio.ensure_future(asyncio.to_thread(migrate_slot, dep, slot, target))
        written = 0
        while not moving.done() or written < 3:
            writers = [
                saver.aput(cfg(name), checkpoint({f"i{written}": written}), {}, {f"i{written}": 1})
                for name in ("moving", "other-1", "other-2")
            ]
            await asyncio.gather(*writers)
            written += 1
        await moving
        stored = await saver.aput(cfg("moving"), checkpoint({"i": "last"}), {}, {"i": 1})
        got = await saver.aget_tuple(stored)
        assert got is not None and got.checkpoint["channel_values"] == {"i": "last"}
        await saver.aclose()
        assert not saver.shell.nodes and not saver.shell.retired and not saver.shell.using
        del saver
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
