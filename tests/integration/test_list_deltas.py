"""Growing lists stored as deltas, on real servers: exact reads in every mode,
maintenance that keeps the bases it needs, and bases that vanish under a writer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.keys import blob_field
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

FORCED = {"scripts": {}, "per-key": {"transactions": False, "scripts": False}}


def grow(
    saver: RedisClusterSaver, thread: str, steps: int, start: int = 0, run: str = "r"
) -> list[tuple[Any, list[str]]]:
    """A message list that gains one item per step; returns (config, list) per step."""
    latest = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    config: Any = (
        latest.config if latest else {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    )
    messages = list(latest.checkpoint["channel_values"]["messages"]) if latest else []
    version = latest.checkpoint["channel_versions"]["messages"] if latest else None
    out = []
    for i in range(start, start + steps):
        messages = [*messages, f"message {i}: " + "x" * 60]
        version = saver.get_next_version(version, None)
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": messages, "topic": "fixed"}
        cp["channel_versions"] = {"messages": version, "topic": "1"}
        new = {"messages": version, **({"topic": "1"} if i == 0 else {})}
        config = saver.put(config, cp, {"step": i, "run_id": run, "source": "loop"}, new)
        out.append((config, list(messages)))
    return out


def blob_bytes(saver: RedisClusterSaver, thread: str) -> tuple[int, int]:
    """(fields, bytes) of the thread's blob hash."""
    key = saver.ops.layout.thread(thread).blobs("")
    values = saver.client.hgetall(key)
    return len(values), sum(len(v) for v in values.values())


def check_all(saver: RedisClusterSaver, written: list[tuple[Any, list[str]]]) -> None:
    for config, messages in written:
        tup = saver.get_tuple(config)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["messages"] == messages
    thread = written[0][0]["configurable"]["thread_id"]
    listed = list(saver.list({"configurable": {"thread_id": thread}}))
    want = {c["configurable"]["checkpoint_id"]: m for c, m in written}
    assert len(listed) == len(want)
    for tup in listed:
        assert (
            tup.checkpoint["channel_values"]["messages"]
            == want[tup.config["configurable"]["checkpoint_id"]]
        )


@pytest.mark.parametrize("topology", ["standalone", "cluster", "proxy", "plain"])
def test_growing_lists_read_back_exactly_and_store_compactly(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    options = saver_options(dep)
    with RedisClusterSaver.from_conn_string(url_of(dep), **options) as saver:
        written = grow(saver, "t", 80)
        check_all(saver, written)
        _, stored = blob_bytes(saver, "t")
        whole = sum(len(m) * 70 for _, m in written)
        assert stored < whole / 4, (stored, whole)
        listed = list(saver.list({"configurable": {"thread_id": "t"}}, limit=10))
        assert [t.checkpoint["channel_values"]["messages"] for t in listed] == [
            m for _, m in written[::-1][:10]
        ]
    # a reader that may use no script at all rebuilds the same values
    plain = {**options, **FORCED["per-key"]}
    with RedisClusterSaver.from_conn_string(url_of(dep), **plain) as reader:
        check_all(reader, written)


async def test_async_cluster_writes_deltas_in_one_script(redis_cluster: Any) -> None:
    options = saver_options(redis_cluster)
    async with AsyncRedisClusterSaver.from_conn_string(redis_cluster.url, **options) as saver:
        config: Any = {"configurable": {"thread_id": "a", "checkpoint_ns": ""}}
        messages: list[str] = []
        version = None
        for i in range(40):
            messages = [*messages, "y" * 80]
            version = saver.get_next_version(version, None)
            cp = empty_checkpoint()
            cp["channel_values"] = {"messages": messages}
            cp["channel_versions"] = {"messages": version}
            config = await saver.aput(config, cp, {"step": i}, {"messages": version})
        tup = await saver.aget_tuple(config)
        assert tup is not None and tup.checkpoint["channel_values"]["messages"] == messages
        listed = [t async for t in saver.alist({"configurable": {"thread_id": "a"}})]
        assert [len(t.checkpoint["channel_values"]["messages"]) for t in listed] == list(
            range(40, 0, -1)
        )
    with RedisClusterSaver.from_conn_string(redis_cluster.url, **options) as sync:
        assert blob_bytes(sync, "a")[1] < sum(n * 85 for n in range(1, 41)) / 4


@pytest.mark.parametrize("forced", list(FORCED))
def test_prune_and_delete_for_runs_keep_the_bases_they_need(
    redis_cluster: Any, forced: str
) -> None:
    options = saver_options(redis_cluster)
    with RedisClusterSaver.from_conn_string(redis_cluster.url, **options) as writer:
        first = grow(writer, "p", 30, run="a")
        second = grow(writer, "p", 30, start=30, run="b")
        fields_before, _ = blob_bytes(writer, "p")
    with RedisClusterSaver.from_conn_string(
        redis_cluster.url, **options, **FORCED[forced]
    ) as saver:
        saver.delete_for_runs(["a"])
        check_all(saver, second)  # their chains may start among run a's values
        assert saver.get_tuple(first[-1][0]) is None
        saver.prune(["p"], keep_last=3)
        check_all(saver, second[-3:])
        fields_after, _ = blob_bytes(saver, "p")
        assert fields_after < fields_before / 2


@pytest.mark.parametrize("forced", [{}, {"transactions": False}], ids=["multi", "script"])
def test_a_base_deleted_under_a_writer_is_stored_again(
    standalone: Any, forced: dict[str, Any]
) -> None:
    options = saver_options(standalone, **forced)
    with (
        RedisClusterSaver.from_conn_string(standalone.url, **options) as writer,
        RedisClusterSaver.from_conn_string(standalone.url, **options) as other,
    ):
        written = grow(writer, "d", 20)
        other.delete_thread("d")  # the writer still remembers its last value
        config, messages = written[-1]
        version = writer.get_next_version(None, None)
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": [*messages, "one more"]}
        cp["channel_versions"] = {"messages": version}
        stored = writer.put(config, cp, {"step": 99}, {"messages": version})
        tup = other.get_tuple(stored)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["messages"] == [*messages, "one more"]
        key = writer.ops.layout.thread("d").blobs("")
        frame = writer.client.hget(key, blob_field("messages", version))
        assert frame is not None and frame[:1] == b"\x00"  # stored whole again
        # and the writer goes on with deltas from the value it stored again
        more = grow(writer, "d", 10, start=100)
        check_all(other, [(stored, [*messages, "one more"]), *more])
        assert any(v[:1] == b"+" for v in writer.client.hvals(key))


def test_list_deltas_can_be_turned_off(standalone: Any) -> None:
    options = saver_options(standalone, list_deltas=False)
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        written = grow(saver, "w", 30)
        check_all(saver, written)
        key = saver.ops.layout.thread("w").blobs("")
        assert all(not v.startswith(b"+") for v in saver.client.hvals(key))


def test_copies_carry_their_chains(redis_cluster: Any) -> None:
    options = saver_options(redis_cluster)
    with RedisClusterSaver.from_conn_string(redis_cluster.url, **options) as saver:
        written = grow(saver, "src", 40)
        saver.copy_thread("src", "dst")
        copied = [
            ({"configurable": {**c["configurable"], "thread_id": "dst"}}, m) for c, m in written
        ]
        saver.delete_thread("src")
        check_all(saver, copied)


def put_list(
    saver: RedisClusterSaver, parent: Any, messages: list[str], version: Any, step: int
) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": messages}
    cp["channel_versions"] = {"messages": version}
    return saver.put(parent, cp, {"step": step}, {"messages": version})


LONG = "system prompt " + "s" * 4000  # so that every later step is stored as a delta


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_a_fork_that_reuses_a_version_changes_no_stored_checkpoint(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    with RedisClusterSaver.from_conn_string(url_of(dep), **saver_options(dep)) as saver:
        root: Any = {"configurable": {"thread_id": "fork", "checkpoint_ns": ""}}
        first = put_list(saver, root, [LONG, "a"], 1, 0)
        second = put_list(saver, first, [LONG, "a", "c"], 2, 1)  # a delta against version 1
        put_list(saver, root, [LONG, "b"], 1, 0)  # a fork: version 1 again, another value
        for config, want in ((first, [LONG, "a"]), (second, [LONG, "a", "c"])):
            tup = saver.get_tuple(config)
            assert tup is not None and tup.checkpoint["channel_values"]["messages"] == want


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 8),  # which earlier checkpoint is the parent
            st.integers(1, 4),  # the version: small, so forks reuse versions
            st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),  # items appended
            st.booleans(),  # or the list replaced by them
        ),
        min_size=2,
        max_size=10,
    )
)
def test_stored_values_never_change_after_put(
    standalone: Any, steps: list[tuple[int, int, list[str], bool]]
) -> None:
    """Whatever is written later (forks, reused versions, deltas against values that
    a later put names again), each checkpoint reads back what it read after its put."""
    options = saver_options(standalone)
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        root: Any = {"configurable": {"thread_id": "prop", "checkpoint_ns": ""}}
        made: list[tuple[Any, list[str]]] = []
        for step, (parent_at, version, items, replace) in enumerate(steps):
            parent, before = made[parent_at % len(made)] if made else (root, [LONG])
            messages = [LONG, *items] if replace else [*before, *items]
            config = put_list(saver, parent, messages, version, step)
            tup = saver.get_tuple(config)
            assert tup is not None
            made.append((config, tup.checkpoint["channel_values"]["messages"]))
        for config, seen in made:
            tup = saver.get_tuple(config)
            assert tup is not None and tup.checkpoint["channel_values"]["messages"] == seen
