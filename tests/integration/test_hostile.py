"""Hostile input on real servers, judged against LangGraph's own InMemorySaver.

Every hostile input must either round-trip exactly (as InMemorySaver, the reference,
gives it back) or be refused with a clear ValueError/TypeError naming the field, with
nothing written. Then a hypothesis state machine drives our sync saver and
InMemorySaver side by side over a small alphabet of hostile ids, so that they
collide, and compares every answer.

Where our saver deliberately differs from InMemorySaver, the reference is adjusted
and the reason is stated: metadata must be JSON (InMemorySaver keeps anything its
serializer takes), the ``writes`` metadata key is dropped (LangGraph's
``get_serializable_checkpoint_metadata``), and listing across namespaces or threads
is newest first by (checkpoint id, thread, namespace) with the limit applied to that
order (InMemorySaver walks threads and namespaces in insertion order).
"""

from __future__ import annotations

import datetime
import math
import os
import random
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from langgraph.checkpoint.base import (
    CheckpointTuple,
    empty_checkpoint,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver

from redis_cluster_saver import RedisClusterSaver
from tests.support.servers import keys_under, primaries

from .conftest import saver_options

# ---------------------------------------------------------------------------------
# helpers


def cfg(thread: Any, ns: Any = "", cid: Any = None, **extra: Any) -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns, **extra}
    if cid is not None:
        conf["checkpoint_id"] = cid
    return {"configurable": conf}


def make_checkpoint(cid: str, values: dict[str, Any], versions: dict[str, Any]) -> Any:
    cp = empty_checkpoint()
    cp["v"] = 4  # what langgraph.pregel writes today
    cp["id"] = cid
    cp["ts"] = "2024-07-01T00:00:00+00:00"
    cp["channel_values"] = values
    cp["channel_versions"] = versions
    return cp


def norm(t: CheckpointTuple | None) -> Any:
    """Everything a tuple says, as plain comparable data."""
    if t is None:
        return None
    conf = t.config["configurable"]
    parent = None
    if t.parent_config is not None:
        p = t.parent_config["configurable"]
        parent = (p["thread_id"], p["checkpoint_ns"], p["checkpoint_id"])
    return (
        (conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"]),
        dict(t.checkpoint),
        dict(t.metadata),
        parent,
        list(t.pending_writes or []),
    )


def newest_first(rows: list[Any], limit: int | None = None) -> list[Any]:
    """The saver's documented order: (checkpoint id, thread, namespace), newest first."""
    ordered = sorted(rows, key=lambda r: (r[0][2], r[0][0], r[0][1]), reverse=True)
    if limit is not None:
        return ordered[: max(limit, 0)]
    return ordered


def snapshot(deployment: Any, prefix: str) -> dict[bytes, Any]:
    """Every key under the prefix with its full content, from every primary."""
    out: dict[bytes, Any] = {}
    for client in primaries(deployment):
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            kind = client.type(key)
            if kind == b"hash":
                out[key] = client.hgetall(key)
            elif kind == b"set":
                out[key] = client.smembers(key)
            elif kind == b"zset":
                out[key] = client.zrange(key, 0, -1)
            else:
                out[key] = (kind, client.dump(key))
        client.close()
    return out


def wipe(deployment: Any, prefix: str) -> None:
    """Delete whatever is left under the prefix (one key at a time: slots differ)."""
    for client in primaries(deployment):
        for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
            client.delete(key)
        client.close()


# Characters that break naive key schemes, hash tags, escapes, C strings, terminals
# and bidi rendering, plus 2-, 3- and 4-byte UTF-8.
SPICE = "{}%:|\x00\n\r\t\x01\x1f\x7f\u200f\u202e\u2028\ufeff😀é中\\'\"$*?[]~ -_,;"


def mixed(length: int, seed: int) -> str:
    """A reproducible string of ``length`` characters, most of them hostile."""
    rng = random.Random(seed)
    block = "".join(rng.choice(SPICE + "abcdefxyz0123456789") for _ in range(4096))
    return (block * (length // len(block) + 1))[:length]


MEGA = 1 << 20  # characters


# ---------------------------------------------------------------------------------
# 1. ids of a megabyte (and long channel names), every operation, against InMemorySaver


def scenario(saver: Any, thread: str, ns: str, cid: str, task: str, channel: str) -> dict[str, Any]:
    """The same calls on any saver; returns what it answered, normalized, by call."""
    first, second = cid + "1", cid + "2"
    seen: dict[str, Any] = {}
    seen["put"] = saver.put(
        cfg(thread, ns),
        make_checkpoint(first, {channel: "one", "plain": [1]}, {channel: 1, "plain": 1}),
        {"source": "input", "step": -1, "who": channel[:300]},
        {channel: 1, "plain": 1},
    )
    seen["put child"] = c2 = saver.put(
        cfg(thread, ns, first),
        make_checkpoint(second, {channel: "two"}, {channel: 2, "plain": 1}),
        {"source": "loop", "step": 0, "who": channel[:300]},
        {channel: 2},
    )
    saver.put_writes(seen["put"], [(channel, "w1"), ("plain", task[:100])], task, task[:1000])
    saver.put_writes(c2, [(channel, "w2"), ("__interrupt__", {"why": channel[:50]})], task)
    saver.put_writes(c2, [(channel, "retried, ignored")], task)
    seen["get latest"] = norm(saver.get_tuple(cfg(thread, ns)))
    seen["get by id"] = norm(saver.get_tuple(cfg(thread, ns, first)))
    seen["get other thread"] = norm(saver.get_tuple(cfg(thread + "x", ns)))
    seen["get other ns"] = norm(saver.get_tuple(cfg(thread, ns + "x")))
    seen["get id prefix"] = norm(saver.get_tuple(cfg(thread, ns, cid)))
    every_ns = {"configurable": {"thread_id": thread}}
    seen["list thread"] = [norm(t) for t in saver.list(every_ns)]
    seen["list before"] = [norm(t) for t in saver.list(cfg(thread, ns), before=c2, limit=1)]
    who = {"who": channel[:300]}
    seen["list filter"] = [norm(t) for t in saver.list(cfg(thread, ns), filter=who)]
    seen["list None"] = [norm(t) for t in saver.list(None)]
    seen["list None filter"] = [norm(t) for t in saver.list(None, filter={"source": "loop"})]
    return seen


def copy_in_memory(mem: InMemorySaver, src: str, dst: str) -> None:
    """copy_thread on InMemorySaver's storage: every checkpoint with its writes and
    values; a copied checkpoint replaces the target's (writes included)."""
    if src not in mem.storage:
        return
    for ns, cps in list(mem.storage[src].items()):
        for cid, entry in list(cps.items()):
            mem.storage[dst][ns][cid] = entry
            writes = mem.writes.get((src, ns, cid))
            if writes:
                mem.writes[(dst, ns, cid)] = dict(writes)
            else:
                mem.writes.pop((dst, ns, cid), None)
    for (t, ns, ch, ver), blob in list(mem.blobs.items()):
        if t == src:
            mem.blobs[(dst, ns, ch, ver)] = blob


HUGE = {
    "thread_id": {"thread": mixed(MEGA, 1)},
    "checkpoint_ns": {"ns": mixed(MEGA, 2)},
    "checkpoint_id": {"cid": mixed(MEGA, 3)},
    "task_id": {"task": mixed(MEGA, 4)},
    "channel": {"channel": mixed(64 * 1024, 5)},
    "all at once, 256 KiB each": {
        "thread": mixed(MEGA // 4, 6),
        "ns": mixed(MEGA // 4, 7),
        "cid": mixed(MEGA // 4, 8),
        "task": mixed(MEGA // 4, 9),
        "channel": mixed(4096, 10),
    },
}


@pytest.mark.parametrize("field", list(HUGE))
def test_megabyte_ids_behave_exactly_like_in_memory(deployment: Any, field: str) -> None:
    parts = {"thread": "t{1}", "ns": "p:1|c:2", "cid": "0001", "task": "task", "channel": "ch"}
    parts.update(HUGE[field])
    options = saver_options(deployment)
    mem = InMemorySaver()
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        if field not in ("task_id", "channel"):
            # ids that make a key over the limit are refused, naming the limit, and
            # nothing is written (the search index cannot tell such keys apart)
            with pytest.raises(ValueError, match="bytes; the limit is"):
                scenario(saver, **parts)
            assert keys_under(deployment, options["key_prefix"]) == []
            return
        ours, reference = scenario(saver, **parts), scenario(mem, **parts)
        # copies, then deletes: afterwards not one key is left
        target = parts["thread"][::-1] + "\u200f"
        saver.copy_thread(parts["thread"], target)
        copy_in_memory(mem, parts["thread"], target)
        every_ns = {"configurable": {"thread_id": target}}
        ours["list copy"] = [norm(t) for t in saver.list(every_ns)]
        reference["list copy"] = [norm(t) for t in mem.list(every_ns)]
        assert len(reference["list copy"]) == 2
        saver.delete_thread(parts["thread"])
        ours["get deleted"] = saver.get_tuple(cfg(parts["thread"], parts["ns"]))
        reference["get deleted"] = None
        saver.delete_thread(target)
        ours["keys left"] = keys_under(deployment, options["key_prefix"])
        reference["keys left"] = []
    differ = [call for call in reference if ours[call] != reference[call]]
    assert differ == []


# ---------------------------------------------------------------------------------
# 2. text that is not valid Unicode (lone surrogates) and wrong types: a clear error,
#    naming the field, and nothing written

BAD = "bad\ud800text"


def _put(
    thread: Any = "t",
    ns: Any = "",
    cid: Any = "0001",
    parent: Any = None,
    values: Any = None,
    versions: Any = None,
    new: Any = None,
    metadata: Any = None,
    **extra: Any,
) -> Callable[[RedisClusterSaver], Any]:
    values = {"a": 1} if values is None else values
    versions = {"a": 1} if versions is None else versions
    new = dict(versions) if new is None else new
    md = {} if metadata is None else metadata

    def call(saver: RedisClusterSaver) -> Any:
        cp = make_checkpoint(cid, values, versions)
        return saver.put(cfg(thread, ns, parent, **extra), cp, md, new)

    return call


def _writes(
    writes: Any = (("a", 1),), task: Any = "task", path: Any = "", thread: Any = "t"
) -> Callable[[RedisClusterSaver], Any]:
    return lambda s: s.put_writes(cfg(thread, "", "0001"), list(writes), task, path)


INVALID: list[tuple[str, Callable[[RedisClusterSaver], Any], Any, str]] = [
    ("thread_id", _put(thread=BAD), ValueError, "thread_id"),
    ("checkpoint_ns", _put(ns=BAD), ValueError, "checkpoint_ns"),
    ("checkpoint id", _put(cid=BAD), ValueError, "checkpoint"),
    ("parent checkpoint id", _put(parent=BAD), ValueError, "checkpoint_id"),
    ("new channel", _put(values={BAD: 1}, versions={BAD: 1}), ValueError, "channel"),
    (
        "kept channel",
        _put(versions={"a": 1, BAD: 1}, new={"a": 1}),
        (ValueError, TypeError),
        "channel|checkpoint",
    ),
    ("version", _put(versions={"a": BAD}), (ValueError, TypeError), "version|checkpoint"),
    ("metadata value", _put(metadata={"k": BAD}), ValueError, r"metadata\['k'\]"),
    ("metadata key", _put(metadata={BAD: 1}), ValueError, "metadata"),
    ("config value to metadata", _put(user=BAD), ValueError, r"metadata\['user'\]"),
    ("write channel", _writes(writes=[("a", 1), (BAD, 2)]), ValueError, "write channel"),
    ("task_id", _writes(task=BAD), ValueError, "task_id"),
    ("task_path", _writes(path=BAD), ValueError, "task_path"),
    ("writes thread", _writes(thread=BAD), ValueError, "thread_id"),
    ("delete_thread", lambda s: s.delete_thread(BAD), ValueError, "thread_id"),
    ("copy source", lambda s: s.copy_thread(BAD, "t"), ValueError, "source_thread_id"),
    ("copy target", lambda s: s.copy_thread("t", BAD), ValueError, "target_thread_id"),
    ("prune", lambda s: s.prune(["t", BAD]), ValueError, "thread_id"),
    ("delete_for_runs", lambda s: s.delete_for_runs(["r", BAD]), ValueError, "run_id"),
    # wrong types
    ("int channel kept", _put(versions={"a": 1, 7: 1}, new={"a": 1}), TypeError, "channel"),
    ("int channel new", _put(values={7: 1}, versions={7: 1}), TypeError, "channel"),
    ("metadata not a mapping", _put(metadata=["source"]), TypeError, "metadata"),
    ("metadata int key", _put(metadata={1: 2}), TypeError, "metadata"),
    ("task_id None", _writes(task=None), TypeError, "task_id"),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [pytest.param(c, e, m, id=name) for name, c, e, m in INVALID],
)
def test_invalid_text_and_types_are_refused_before_anything_is_written(
    deployment: Any, call: Callable[[RedisClusterSaver], Any], error: Any, match: str
) -> None:
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        with pytest.raises(error) as refused:
            call(saver)
        left = keys_under(deployment, options["key_prefix"])
        message = f"{type(refused.value).__name__}: {refused.value}"
        assert re.search(match, str(refused.value)) and left == [], (message, left)


# ---------------------------------------------------------------------------------
# 3. metadata: JSON round-trips exactly (LangGraph's semantics), the rest is refused


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {f"k{i % 3}": value} if i % 2 else [value]
    return value


HOSTILE_METADATA: dict[str, Any] = {
    "source": "loop",
    "step": 3,
    "run_id": "run{1}:|",
    "deep": nested(200, "bottom\x00"),
    "nul inside": {"a": "x\x00y", "list": ["\x00", "\x00\x00"]},
    "nul at top": "x\x00y\x00",  # LangGraph strips NUL from top-level strings
    "": "empty key",
    "k:e{y}|%\x00\n\u200f": "hostile key",
    "long" + "k" * 10_000: "v" * 100_000,
    "unicode": "😀é中\u202e\ufeff\u2028",
    "ints": [2**63 - 1, -(2**63), 2**64 - 1, 0, -1],
    "floats": [1.5, -0.0, 1e300, -2.5e-300],
    "empties": [[], {}, "", None],
    "bools": [True, False],
    "none": None,
}


def test_metadata_round_trips_as_langgraph_defines_it(deployment: Any) -> None:
    options = saver_options(deployment)
    config = cfg("md", "", None, user="from\x00config", __secret="never", thread_ts=3)
    metadata = {**HOSTILE_METADATA, "writes": {"node": 1}}
    mem = InMemorySaver()
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        stored = saver.put(config, make_checkpoint("0001", {}, {}), metadata, {})
        mem.put(config, make_checkpoint("0001", {}, {}), metadata, {})
        got = saver.get_tuple(stored)
        assert got is not None
        expected = get_serializable_checkpoint_metadata(config, metadata)
        assert got.metadata == expected
        assert got.metadata["nul at top"] == "xy"
        assert got.metadata["user"] == "fromconfig"
        assert got.metadata["nul inside"] == {"a": "x\x00y", "list": ["\x00", "\x00\x00"]}
        # InMemorySaver keeps "writes"; every other key is identical
        reference = mem.get_tuple(stored)
        assert reference is not None
        assert {k: v for k, v in reference.metadata.items() if k != "writes"} == got.metadata
        # and every key filters exactly, in the thread and across threads
        for key, value in expected.items():
            assert [t.checkpoint["id"] for t in saver.list(cfg("md"), filter={key: value})] == [
                "0001"
            ], key
            assert [t.checkpoint["id"] for t in saver.list(None, filter={key: value})] == [
                "0001"
            ], key
        assert list(saver.list(None, filter={"nul inside": {"a": "xy"}})) == []


def test_integral_floats_in_metadata_equal_their_ints_as_in_python(deployment: Any) -> None:
    """``{"step": 2.0} == {"step": 2}`` in Python, so InMemorySaver matches either
    way; ours stores them the same (read back as 2) and must find both."""
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        saver.put(cfg("f1"), make_checkpoint("0001", {}, {}), {"step": 2.0, "n": 2.0}, {})
        saver.put(cfg("f2"), make_checkpoint("0002", {}, {}), {"step": 2, "n": 2}, {})
        for filt in ({"n": 2}, {"n": 2.0}):
            ids = [t.checkpoint["id"] for t in saver.list(cfg("f1"), filter=filt)]
            assert ids == ["0001"], filt
            ids = [t.checkpoint["id"] for t in saver.list(None, filter=filt)]
            assert ids == ["0002", "0001"], filt
        for filt in ({"step": 2}, {"step": 2.0}):
            ids = [t.checkpoint["id"] for t in saver.list(None, filter=filt)]
            assert ids == ["0002", "0001"], filt  # across threads: the index path


class Unpicklable:
    def __reduce__(self) -> Any:
        raise RuntimeError("refuses to be pickled")


REFUSED_METADATA: dict[str, Any] = {
    "bytes": b"raw",
    "set": {1, 2},
    "object": object(),
    "datetime": datetime.datetime(2024, 7, 1, tzinfo=datetime.timezone.utc),
    "unpicklable": Unpicklable(),
    "int beyond 64 bits": 2**64,
    "nested int key": {"a": {1: "x"}},
    "too deep for JSON": nested(300, 1),
    "deeper than Python's recursion limit": nested(5000, 1),
    "nan": math.nan,
    "infinity": math.inf,
    "nested nan": {"x": [math.nan]},
}


def same_json(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (a round trip of NaN is exact if NaN comes back)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", list(REFUSED_METADATA))
def test_non_json_metadata_round_trips_or_is_refused_naming_the_key(
    deployment: Any, name: str
) -> None:
    value = REFUSED_METADATA[name]
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        try:
            stored = saver.put(cfg("md"), make_checkpoint("0001", {}, {}), {name: value}, {})
        except (ValueError, TypeError) as exc:
            assert f"metadata[{name!r}]" in str(exc)
            assert keys_under(deployment, options["key_prefix"]) == []
            return
        got = saver.get_tuple(stored)
        assert got is not None
        assert same_json(got.metadata[name], value), (
            f"metadata[{name!r}] was stored without an error but read back as "
            f"{got.metadata[name]!r:.80}"
        )


# ---------------------------------------------------------------------------------
# 4. channel values and writes the serializer refuses: clear error, nothing written


def _self_referencing() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


REFUSED_VALUES: dict[str, Callable[[], Any]] = {
    "object": object,
    "raises in __reduce__": Unpicklable,
    "lambda": lambda: lambda: None,
    "lock": threading.Lock,
    "generator": lambda: (i for i in range(3)),
    "int beyond 64 bits": lambda: 2**70,
    "self-referencing list": _self_referencing,
    "nested 600 deep": lambda: nested(600, 1),
    "refused inside a dict": lambda: {"ok": [1, 2], "bad": {"deeper": object()}},
}


@pytest.fixture
def populated(deployment: Any) -> Iterator[tuple[Any, RedisClusterSaver, str, Any]]:
    """A saver with one thread already holding two checkpoints and writes."""
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        c1 = saver.put(cfg("t"), make_checkpoint("0001", {"a": "one"}, {"a": 1}), {}, {"a": 1})
        saver.put_writes(c1, [("a", "w")], "task")
        c2 = saver.put(
            cfg("t", "", "0001"), make_checkpoint("0002", {"a": "two"}, {"a": 2}), {}, {"a": 2}
        )
        yield deployment, saver, options["key_prefix"], c2


@pytest.mark.parametrize("name", list(REFUSED_VALUES))
def test_refused_channel_value_raises_and_writes_nothing(
    populated: tuple[Any, RedisClusterSaver, str, Any], name: str
) -> None:
    deployment, saver, prefix, _ = populated
    value = REFUSED_VALUES[name]()
    try:
        saver.serde.dumps_typed(value)
    except Exception:  # the serializer's own error types vary
        pass
    else:
        pytest.fail(f"the serializer accepts {name}: not a refusal")
    before = snapshot(deployment, prefix)
    big = "fine " * 200_000  # a good 1 MB value in the same put must not land either
    cp = make_checkpoint("0003", {"a": big, "b": value}, {"a": 3, "b": 1})
    with pytest.raises(TypeError, match="channel 'b'"):
        saver.put(cfg("t", "", "0002"), cp, {"step": 3}, {"a": 3, "b": 1})
    cp = make_checkpoint("0003", {"a": big, "b": value}, {"a": 3, "b": 1})
    with pytest.raises(TypeError, match="channel 'b'"):
        saver.put(cfg("fresh"), cp, {}, {"a": 3, "b": 1})
    assert snapshot(deployment, prefix) == before
    latest = saver.get_tuple(cfg("t"))
    assert latest is not None and latest.checkpoint["channel_values"] == {"a": "two"}


@pytest.mark.parametrize("name", list(REFUSED_VALUES))
def test_refused_write_raises_and_writes_nothing(
    populated: tuple[Any, RedisClusterSaver, str, Any], name: str
) -> None:
    deployment, saver, prefix, c2 = populated
    value = REFUSED_VALUES[name]()
    before = snapshot(deployment, prefix)
    with pytest.raises(TypeError, match="write to 'b'"):
        saver.put_writes(c2, [("a", "fine"), ("b", value), ("c", "fine")], "task")
    with pytest.raises(TypeError, match="write to '__error__'"):
        saver.put_writes(c2, [("a", "fine"), ("__error__", value)], "task2")
    with pytest.raises(TypeError, match="write to 'b'"):
        saver.put_writes(cfg("fresh", "", "0001"), [("b", value)], "task")
    assert snapshot(deployment, prefix) == before
    latest = saver.get_tuple(c2)
    assert latest is not None and latest.pending_writes == []


def test_refused_checkpoint_body_raises_and_writes_nothing(
    populated: tuple[Any, RedisClusterSaver, str, Any],
) -> None:
    deployment, saver, prefix, _ = populated
    before = snapshot(deployment, prefix)
    cp = make_checkpoint("0003", {"a": "three"}, {"a": 3})
    cp["versions_seen"] = {"node": {"a": Unpicklable()}}
    with pytest.raises(TypeError, match="checkpoint"):
        saver.put(cfg("t", "", "0002"), cp, {}, {"a": 3})
    assert snapshot(deployment, prefix) == before


# ---------------------------------------------------------------------------------
# 5. a 100 MB state

BIG = 100 << 20  # 2-3 s per topology to write, read twice and delete (measured)


def test_hundred_megabyte_channel_value_round_trips(deployment: Any) -> None:
    options = saver_options(deployment)
    value = os.urandom(BIG)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        stored = saver.put(
            cfg("big"),
            make_checkpoint("0001", {"state": value, "small": 1}, {"state": 1, "small": 1}),
            {"size": BIG},
            {"state": 1, "small": 1},
        )
        got = saver.get_tuple(cfg("big"))
        assert got is not None and got.config == stored
        assert got.checkpoint["channel_values"]["state"] == value
        listed = list(saver.list(cfg("big"), limit=1))
        assert len(listed) == 1
        assert listed[0].checkpoint["channel_values"] == {"state": value, "small": 1}
        saver.delete_thread("big")
        assert keys_under(deployment, options["key_prefix"]) == []


# ---------------------------------------------------------------------------------
# 6. bugs the hostile inputs found (each a minimal reproduction)


def test_delete_thread_removes_writes_of_checkpoints_never_put(deployment: Any) -> None:
    """InMemorySaver.delete_thread drops every write of the thread; writes put for a
    checkpoint id that was never stored must go too, and must not reappear when a
    checkpoint with that id is put later."""
    options = saver_options(deployment)
    mem = InMemorySaver()
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        for s in (saver, mem):
            s.put_writes(cfg("o", "", "0002"), [("a", "orphan")], "task")
            s.put(cfg("o"), make_checkpoint("0001", {}, {}), {}, {})
            s.delete_thread("o")
            s.put(cfg("o"), make_checkpoint("0002", {}, {}), {}, {})
        assert norm(saver.get_tuple(cfg("o"))) == norm(mem.get_tuple(cfg("o")))
        saver.delete_thread("o")
        assert keys_under(deployment, options["key_prefix"]) == []


@pytest.mark.parametrize("field", ["thread_id", "checkpoint_ns", "checkpoint_id"])
def test_ids_near_the_key_limit_stay_visible_across_threads(deployment: Any, field: str) -> None:
    """Found by the megabyte test: the search index keeps one document for keys that
    share their first 64 KiB. Ids up to the key limit (48 KiB) list exactly; longer
    ones are refused at put (test_megabyte_ids_...)."""
    options = saver_options(deployment)
    long = "x" * 40_000
    ids = []
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        for n in "123":
            thread, ns, cid = "t", "", f"000{n}"
            if field == "thread_id":
                thread = long
            elif field == "checkpoint_ns":
                ns = long
            else:
                cid = long + n
            saver.put(cfg(thread, ns), make_checkpoint(cid, {}, {}), {"source": "loop"}, {})
            ids.insert(0, cid)
        assert [t.checkpoint["id"] for t in saver.list(cfg(thread, ns))] == ids
        assert [t.checkpoint["id"] for t in saver.list(None)] == ids
        listed = saver.list(None, filter={"source": "loop"}, limit=2)
        assert [t.checkpoint["id"] for t in listed] == ids[:2]


TAG_VALUES = {
    "space": " ",
    "trailing space": "run ",
    "leading space": " run",
    "tab": "a\tb",
    "carriage return": "a\rb",
    "\\x01": "a\x01b",
    "\\x1e": "a\x1eb",
    "DEL": "a\x7fb",
    "long": "r" * 5000,
}


@pytest.mark.parametrize("key", ["source", "run_id"])
@pytest.mark.parametrize("value", list(TAG_VALUES.values()), ids=list(TAG_VALUES))
def test_filters_across_threads_match_hostile_source_and_run_id(
    deployment: Any, key: str, value: str
) -> None:
    """The search index pre-filters source and run_id as tags; a value the index
    cannot hold exactly must not make the exact match disappear."""
    options = saver_options(deployment)
    mem = InMemorySaver()
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        for s in (saver, mem):
            s.put(cfg("a"), make_checkpoint("0001", {}, {}), {key: value}, {})
            s.put(cfg("b"), make_checkpoint("0002", {}, {}), {key: "other"}, {})
        expected = [norm(t) for t in mem.list(None, filter={key: value})]
        assert len(expected) == 1
        assert [norm(t) for t in saver.list(None, filter={key: value})] == expected
        if key == "run_id":
            saver.delete_for_runs([value])
            assert [t.checkpoint["id"] for t in saver.list(None)] == ["0002"]


@pytest.mark.parametrize("key", ["source", "run_id"])
def test_nul_in_a_cross_thread_filter_or_run_id_is_no_server_error(
    deployment: Any, key: str
) -> None:
    """NUL is stripped from top-level metadata strings when stored, so a filter with
    NUL matches nothing (InMemorySaver: []); it must not reach the server as a
    broken query."""
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        saver.put(cfg("a"), make_checkpoint("0001", {}, {}), {key: "a\x00b"}, {})
        assert [t.metadata[key] for t in saver.list(None, filter={key: "ab"})] == ["ab"]
        assert list(saver.list(None, filter={key: "a\x00b"})) == []
        if key == "run_id":
            saver.delete_for_runs(["a\x00b"])  # no such run id: deletes nothing
            assert len(list(saver.list(None))) == 1


# ---------------------------------------------------------------------------------
# 7. stateful: our saver and InMemorySaver side by side

THREADS = ["", "{t}", "t:1|x", "%7Bt%7D", "nul\x00", "é", "e\u0301", "\u200frtl"]
NAMESPACES = ["", "p:1|c:2", "{ns}", "line\nbreak"]
CHANNELS = ["a", "a:b", "{c}", "%3A", "\x00", "é", "e\u0301"]
SPECIAL_CHANNELS = ["__error__", "__interrupt__", "__scheduled__", "__resume__"]
TASKS = ["", "t", "{t}", "t:1", "\x00"]
PATHS = ["", "~", "a\x00", "~:1"]
ID_TAILS = ["", "{x}", ":", "%3A", "\x00", "\x01", "\n", "\u200f", "é"]
MD_KEYS = ["source", "step", "run_id", "k:ey", "{x}", "\x00k", "é"]
# 0/1/1.0 next to True/False and 2.0 next to 2: Python's equality crosses the types,
# and so must every filter. No leading/trailing spaces and no top-level NUL in
# filters (those are the known cases tested above; leaving them out lets the machine
# look for others).
MD_VALUES = ["x", "xy", "x\x00y", "", "é", "{x}:|", None, 2, 2.0, -7, 2.5, True, False, 1, 0, 1.0]
MD_NESTED: list[Any] = [[2, "a\x00"], [], {}, {"b": 2, "a": [None]}, {"a": [None], "b": 2}]
FILTER_VALUES = st.sampled_from([v for v in MD_VALUES if v != "x\x00y"] + MD_NESTED)
METADATA = st.dictionaries(
    st.sampled_from(MD_KEYS), st.sampled_from(MD_VALUES + MD_NESTED), max_size=3
)
RUN_IDS = ["x", "xy", "", "é", "{x}:|"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**63 - 1), max_size=3),
    st.sets(st.integers(-5, 5), max_size=3),
)
DROP = object()  # a channel in new_versions with no value (the channel was cleared)


PUT_ARGS: dict[str, Any] = dict(
    data=st.data(),
    thread=st.sampled_from(THREADS),
    ns=st.sampled_from(NAMESPACES),
    updates=st.dictionaries(
        st.sampled_from(CHANNELS), st.one_of(st.just(DROP), VALUES), max_size=3
    ),
    version_kind=st.sampled_from(["str", "int", "float"]),
    metadata=METADATA,
    extra=st.none()
    | st.tuples(
        st.sampled_from(["user", "__hidden", "k:ey", "source", "thread_ts"]),
        st.sampled_from(["v", "v\x00w", 2, 2.5, True, None, [2]]),
    ),
)


class SaverVsInMemory(RuleBasedStateMachine):
    """Our saver and InMemorySaver get the same calls and must give the same answers.

    InMemorySaver has no copy_thread, prune or delete_for_runs; those are applied to
    its storage by hand (see ``copy_in_memory`` and the rules).
    """

    saver: RedisClusterSaver
    deployment: Any
    prefix: str

    def __init__(self) -> None:
        super().__init__()
        self.mem = InMemorySaver()
        self.clock = 0
        self.version = 0

    @initialize()
    def start_empty(self) -> None:
        assert keys_under(self.deployment, self.prefix) == []

    # ---- model helpers

    def existing(self) -> list[tuple[str, str, str]]:
        return sorted(
            (t, ns, cid)
            for t, nss in self.mem.storage.items()
            for ns, cps in nss.items()
            for cid in cps
        )

    def next_version(self, kind: str) -> Any:
        self.version += 1
        if kind == "str":
            return f"{self.version:032}.{self.version % 7}"
        return self.version if kind == "int" else self.version + 0.5

    def compare_lists(self, config: Any, **kw: Any) -> None:
        limit = kw.pop("limit", None)
        ours = [norm(t) for t in self.saver.list(config, limit=limit, **kw)]
        reference = newest_first([norm(t) for t in self.mem.list(config, **kw)], limit)
        assert ours == reference

    # ---- writes

    def _put(
        self,
        data: st.DataObject,
        thread: str,
        ns: str,
        parent: str | None,
        cid: str,
        updates: dict[str, Any],
        version_kind: str,
        metadata: dict[str, Any],
        extra: tuple[str, Any] | None,
    ) -> None:
        base: dict[str, Any] = {}
        if parent is not None:
            entry = self.mem.storage[thread][ns][parent]
            base = dict(self.mem.serde.loads_typed(entry[0])["channel_versions"])
        new = {ch: self.next_version(version_kind) for ch in updates}
        values = {ch: v for ch, v in updates.items() if v is not DROP}
        values["not versioned"] = "ignored by every saver"
        config = cfg(thread, ns, parent, **dict([extra] if extra else []))
        results = [
            s.put(config, make_checkpoint(cid, dict(values), {**base, **new}), metadata, new)
            for s in (self.saver, self.mem)
        ]
        assert results[0] == results[1]

    def fresh_id(self, data: st.DataObject) -> str:
        self.clock += 1
        return f"{self.clock:04d}{data.draw(st.sampled_from(ID_TAILS), label='id tail')}"

    @rule(**PUT_ARGS)
    def put_next(self, data: st.DataObject, thread: str, ns: str, **kw: Any) -> None:
        """What a running graph does: a child of the namespace's latest checkpoint."""
        same = sorted(self.mem.storage.get(thread, {}).get(ns, {}))
        parent = same[-1] if same else None
        self._put(data, thread, ns, parent, self.fresh_id(data), **kw)

    @rule(**PUT_ARGS)
    def put_anywhere(self, data: st.DataObject, thread: str, ns: str, **kw: Any) -> None:
        """Forks from any checkpoint, roots, and ids reused (an overwrite in place, or
        the same id in another thread or namespace)."""
        same = sorted(self.mem.storage.get(thread, {}).get(ns, {}))
        parent = data.draw(st.none() | st.sampled_from(same), label="parent") if same else None
        taken = sorted({cid for _, _, cid in self.existing()})
        if taken and data.draw(st.booleans(), label="reuse an id"):
            cid = data.draw(st.sampled_from(taken), label="reused id")
        else:
            cid = self.fresh_id(data)
        self._put(data, thread, ns, parent, cid, **kw)

    @precondition(lambda self: bool(self.existing()))
    @rule(
        data=st.data(),
        writes=st.lists(
            st.tuples(st.sampled_from(CHANNELS + SPECIAL_CHANNELS), VALUES), max_size=3
        ),
        task=st.sampled_from(TASKS),
        path=st.sampled_from(PATHS),
    )
    def put_writes(
        self, data: st.DataObject, writes: list[tuple[str, Any]], task: str, path: str
    ) -> None:
        thread, ns, cid = data.draw(st.sampled_from(self.existing()))
        for s in (self.saver, self.mem):
            s.put_writes(cfg(thread, ns, cid), writes, task, path)

    # ---- reads

    @rule(thread=st.sampled_from(THREADS), ns=st.sampled_from([*NAMESPACES, None]))
    def get_latest(self, thread: str, ns: str | None) -> None:
        config: Any = {"configurable": {"thread_id": thread}}
        if ns is not None:
            config["configurable"]["checkpoint_ns"] = ns
        assert norm(self.saver.get_tuple(config)) == norm(self.mem.get_tuple(config))

    @rule(data=st.data(), thread=st.sampled_from(THREADS), ns=st.sampled_from(NAMESPACES))
    def get_by_id(self, data: st.DataObject, thread: str, ns: str) -> None:
        ids = sorted({cid for _, _, cid in self.existing()} | {"0000", "9999"})
        config = cfg(thread, ns, data.draw(st.sampled_from(ids)))
        assert norm(self.saver.get_tuple(config)) == norm(self.mem.get_tuple(config))

    @rule(
        data=st.data(),
        scope=st.sampled_from(["everything", "thread", "namespace", "id", "id in any ns"]),
        thread=st.sampled_from(THREADS),
        ns=st.sampled_from(NAMESPACES),
        filter=st.none() | st.dictionaries(st.sampled_from(MD_KEYS), FILTER_VALUES, max_size=2),
        limit=st.none() | st.integers(-1, 4),
    )
    def list_checkpoints(
        self,
        data: st.DataObject,
        scope: str,
        thread: str,
        ns: str,
        filter: dict[str, Any] | None,
        limit: int | None,
    ) -> None:
        ids = sorted({cid for _, _, cid in self.existing()} | {"0000", "9999"})
        config: Any = None
        if scope != "everything":
            config = {"configurable": {"thread_id": thread}}
        if scope in ("namespace", "id"):
            config["configurable"]["checkpoint_ns"] = ns
        if scope in ("id", "id in any ns"):
            config["configurable"]["checkpoint_id"] = data.draw(st.sampled_from(ids))
        before = None
        if data.draw(st.booleans(), label="before"):
            before = {"configurable": {"checkpoint_id": data.draw(st.sampled_from(ids))}}
        self.compare_lists(config, filter=filter, before=before, limit=limit)

    # ---- maintenance (one rule, so that state builds up between them)

    @rule(
        data=st.data(),
        kind=st.sampled_from(["delete_thread", "copy_thread", "prune", "delete_for_runs"]),
    )
    def maintain(self, data: st.DataObject, kind: str) -> None:
        getattr(self, kind)(data)

    def delete_thread(self, data: st.DataObject) -> None:
        thread = data.draw(st.sampled_from(THREADS), label="thread")
        self.saver.delete_thread(thread)
        self.mem.delete_thread(thread)

    def copy_thread(self, data: st.DataObject) -> None:
        src = data.draw(st.sampled_from(THREADS), label="source")
        dst = data.draw(st.sampled_from(THREADS), label="target")
        self.saver.copy_thread(src, dst)
        copy_in_memory(self.mem, src, dst)

    def prune(self, data: st.DataObject) -> None:
        threads = data.draw(st.lists(st.sampled_from(THREADS), max_size=3), label="threads")
        how = data.draw(st.sampled_from(["keep_latest", "delete", 0, 1, 2]), label="how")
        if isinstance(how, int):
            self.saver.prune(threads, keep_last=how)
            keep = how
        else:
            self.saver.prune(threads, strategy=how)
            keep = 1 if how == "keep_latest" else 0
        for t in threads:  # keep the newest per namespace, drop the rest with writes
            for ns, cps in self.mem.storage.get(t, {}).items():
                for cid in sorted(cps, reverse=True)[keep:]:
                    del cps[cid]
                    self.mem.writes.pop((t, ns, cid), None)

    def delete_for_runs(self, data: st.DataObject) -> None:
        runs = data.draw(st.lists(st.sampled_from(RUN_IDS), max_size=2), label="runs")
        self.saver.delete_for_runs(runs)
        for t, nss in self.mem.storage.items():
            for ns, cps in nss.items():
                for cid in list(cps):
                    run = self.mem.serde.loads_typed(cps[cid][1]).get("run_id")
                    if isinstance(run, str) and run in runs:
                        del cps[cid]
                        self.mem.writes.pop((t, ns, cid), None)

    # ---- after every step: everything, across threads, is the same

    @invariant()
    def same_everywhere(self) -> None:
        self.compare_lists(None)

    def teardown(self) -> None:
        try:
            for thread in THREADS:
                self.saver.delete_thread(thread)
            assert keys_under(self.deployment, self.prefix) == []
        finally:
            wipe(self.deployment, self.prefix)
            self.saver.ops.known_threads.clear()


STATEFUL = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_saver_matches_in_memory_saver_step_by_step(deployment: Any) -> None:
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        machine = type(
            "SaverVsInMemoryOn" + deployment.topology.title(),
            (SaverVsInMemory,),
            {"saver": saver, "deployment": deployment, "prefix": options["key_prefix"]},
        )
        run_state_machine_as_test(machine, settings=STATEFUL)
