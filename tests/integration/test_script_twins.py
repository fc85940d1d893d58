"""Each Lua script and its plain-command twin (perkey.py) do the same work: both run
on two identical threads on a real server, and their answers and what they leave
behind must be equal. The threads are built by hypothesis from random operations
(namespaces, growing lists stored as deltas, pending writes, runs)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import RedisClusterSaver, codec, perkey, replies, scripts
from redis_cluster_saver.keys import ThreadKeys
from redis_cluster_saver.plan import Plan, ScriptCall, one
from redis_cluster_saver.reads import entry_resolver

from .conftest import saver_options

TWINS = ("twin-a", "twin-b")
LONG = "p" * 3000  # so later list steps are stored as deltas

operation = st.tuples(
    st.sampled_from(["", "child:1", "a|b:c"]),  # namespace
    st.integers(0, 3),  # items appended to the list (0: the list is not written)
    st.sampled_from(["r1", "r2", "r3"]),  # run id
    st.integers(0, 3),  # pending writes of a task
)


def build(saver: RedisClusterSaver, thread: str, ops: list[tuple[str, int, str, int]]) -> None:
    """The same operations, with the same ids and versions, for each twin."""
    lists: dict[str, list[str]] = {}
    parents: dict[str, Any] = {}
    for i, (ns, grow, run, writes) in enumerate(ops):
        cp = empty_checkpoint()
        cp["id"] = f"1ef{i:05d}-0000-6000-8000-000000000000"
        cp["ts"] = f"2026-12-01T00:00:{i:02d}+00:00"
        items = lists.setdefault(ns, [LONG])
        new: dict[str, Any] = {"step": f"{i + 1:06d}"}
        if grow:
            items += [f"{ns} item {i}.{k}" for k in range(grow)]
            new["messages"] = f"{i + 1:06d}"
        cp["channel_values"] = {"messages": list(items), "step": i}
        cp["channel_versions"] = {"messages": f"{i + 1:06d}", "step": f"{i + 1:06d}"}
        config = parents.get(ns) or {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        meta: Any = {"step": i, "run_id": run, "source": "loop"}
        parents[ns] = saver.put(config, cp, meta, new)
        if writes:
            saver.put_writes(parents[ns], [("messages", k) for k in range(writes)], f"task{i}")


def normal(value: Any, saver: RedisClusterSaver) -> Any:
    """A reply with the twin's name in place of the other's, Lua's false as None."""
    if value is False:
        return None
    if isinstance(value, bytes):
        a, b = (t.encode() for t in TWINS)
        tag_a, tag_b = (saver.ops.layout.thread(t).handle.split("\n")[1].encode() for t in TWINS)
        return value.replace(tag_b, tag_a).replace(b, a)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a record of replies.py
        return type(value)(*(normal(v, saver) for v in value))
    if isinstance(value, (list, tuple)):
        return [normal(v, saver) for v in value]
    if isinstance(value, dict):
        return {normal(k, saver): normal(v, saver) for k, v in value.items()}
    return value


def answer(name: str, reply: Any, saver: RedisClusterSaver) -> Any:
    """What a script's answer means, without what may differ in form: namespaces come
    in set order from Lua and sorted from Python (callers sort), and a read carries
    the delta bases its values need on whichever entries (callers look them up across
    the reply), so its values are compared rebuilt."""
    reply = normal(reply, saver)
    if name.startswith("read") and name != "read ids":
        resolver = entry_resolver(reply)
        entries = [
            [
                *e[:4],
                [
                    resolver.value(e.ns, field, frame) if frame else None
                    for field, frame in zip(
                        e.fields.blobs.split(b"\n") if e.fields.blobs else [], e.values
                    )
                ],
                e.parent_writes,
            ]
            for e in reply
        ]
        return sorted(entries, key=lambda e: e[0])
    if name in ("read ids", "export"):
        return sorted(reply, key=lambda e: e[0])
    return reply


def state(client: redis.Redis, saver: RedisClusterSaver, thread: str) -> dict[bytes, Any]:
    """Every key of a thread with its contents (and whether it has a TTL)."""
    tag = saver.ops.layout.thread(thread).handle.split("\n")[1]
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{saver.ops.layout.prefix}:*", count=1000):
        if tag.encode() not in key:
            continue
        kind = client.type(key)
        if kind == b"hash":
            body: Any = client.hgetall(key)
        elif kind == b"zset":
            body = client.zrange(key, 0, -1)
        else:
            body = sorted(client.smembers(key))
        out[normal(key, saver)] = (normal(body, saver), client.pttl(key) > 0)
    return out


def calls(keys: ThreadKeys) -> dict[str, Callable[[RedisClusterSaver], ScriptCall]]:
    """One call of each script, by name, for the thread of ``keys``."""
    h, ns = keys.handle, (keys.namespaces,)
    filter_args = codec.filter_args({"run_id": "r2"})

    def read(*args: Any) -> Callable[[RedisClusterSaver], ScriptCall]:
        return lambda s: ScriptCall(scripts.READ, ns, (h, *args))

    return {
        "read latest": read("list", 0, 1, "", "", 1, ""),
        "read all": read("list", 0, 0, "", "", 0),
        "read page before": read("list", 0, 2, "1ef00004-0000-6000-8000-000000000000", "", 0),
        "read by id": read("id", 0, 0, "", "1ef00002-0000-6000-8000-000000000000", 0),
        "read filtered": read("list", 0, 0, "", "", 0, *filter_args),
        "read ids": read("ids", 0, 3, "", "", 0, *filter_args),
        "history": lambda s: ScriptCall(scripts.HISTORY, ns, (h, "", "", "messages", "step")),
        "export": lambda s: ScriptCall(scripts.EXPORT, ns, (h,)),
        "touch": lambda s: ScriptCall(scripts.TOUCH, ns, (h, 600_000)),
        "prune": lambda s: ScriptCall(scripts.PRUNE, ns, (h, 2)),
        "delete_runs": lambda s: ScriptCall(scripts.DELETE_RUNS, ns, (h, "r1")),
        "delete_thread": lambda s: ScriptCall(scripts.DELETE_THREAD, ns, (h,)),
    }


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=8))
def test_every_script_and_its_plain_twin_agree(standalone: Any, ops: list[Any]) -> None:
    options = saver_options(standalone, key_prefix=f"tw{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(standalone.url)
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        try:
            for name in calls(saver.ops.layout.thread(TWINS[0])):
                for thread in TWINS:
                    saver.delete_thread(thread)
                    build(saver, thread, ops)
                by_script, by_plain = (
                    calls(saver.ops.layout.thread(t))[name](saver) for t in TWINS
                )
                got_script = replies.decode(
                    "read" if name.startswith("read") else by_script.script.name,
                    codec.reply(saver.shell.run(_one(by_script))),
                    ids_only=name == "read ids",
                )
                got_plain = saver.shell.run(perkey.PLANS[by_plain.script.name](by_plain))
                assert answer(name, got_plain, saver) == answer(name, got_script, saver), name
                assert state(client, saver, TWINS[1]) == state(client, saver, TWINS[0]), name
        finally:
            for thread in TWINS:
                saver.delete_thread(thread)
            client.close()


def _one(call: ScriptCall) -> Plan[Any]:
    (reply,) = yield one(call)
    return reply
