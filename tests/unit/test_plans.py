"""Plans without a server: which round trips an operation sends, and that bad
input raises before the first one."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    ConnectionError,
    MaxConnectionsError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from redis_cluster_saver.connection import (
    ENDPOINT_CLUSTER,
    ENDPOINT_REFUSED_HANDSHAKE,
    ENDPOINT_SINGLE,
)
from redis_cluster_saver.detector import Capabilities, detect, endpoint_kind, probe_modes
from redis_cluster_saver.errors import PoolTimeoutError
from redis_cluster_saver.keys import KeyLayout
from redis_cluster_saver.operations import Operations
from redis_cluster_saver.options import TTL
from redis_cluster_saver.plan import Command, Plan, RoundTrip, ScriptCall


def ops(**kw: Any) -> Operations:
    return Operations(KeyLayout("p"), JsonPlusSerializer(), **kw)


def trips(plan: Plan[Any], replies: list[Any] | None = None) -> list[RoundTrip]:
    """Drive a plan, answering every trip with ``replies`` (or Nones)."""
    out: list[RoundTrip] = []
    answer: Any = None
    try:
        while True:
            trip = plan.send(answer)
            out.append(trip)
            answer = replies if replies is not None else [None] * len(trip.calls)
    except StopIteration:
        return out


def config(thread: Any = "t", ns: Any = "", cid: Any = None) -> Any:
    conf = {"thread_id": thread, "checkpoint_ns": ns}
    if cid is not None:
        conf["checkpoint_id"] = cid
    return {"configurable": conf}


def checkpoint(values: dict[str, Any] | None = None) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = values or {}
    cp["channel_versions"] = {k: 1 for k in cp["channel_values"]}
    return cp


def names(trip: RoundTrip) -> list[str]:
    return [c.args[0] if isinstance(c, Command) else c.script.name for c in trip.calls]


def test_put_is_one_transaction_on_a_single_node() -> None:
    cp = checkpoint({"a": 1, "b": [1, 2]})
    sent = trips(ops().put(config(), cp, {"source": "input", "step": -1}, {"a": 1, "b": 1}))
    assert len(sent) == 1 and sent[0].atomic
    # data before publication: the registry entry comes after the checkpoint body
    assert names(sent[0]) == ["HSETNX", "HSETNX", "DEL", "HSET", "SADD", "ZADD", "SADD"]


def test_put_on_a_cluster_lists_the_thread_once_then_sends_one_transaction() -> None:
    o = ops(single_node=False)
    first = trips(o.put(config(), checkpoint(), {}, {}))
    again = trips(o.put(config(), checkpoint(), {}, {}), [1, 1, 1, 1, 1])
    # listed before its first write, and again after a write that found it absent
    assert [t.atomic for t in first] == [False, True, False]
    assert names(first[0]) == names(first[2]) == ["SADD"]
    assert names(first[1])[0] == "EXISTS"
    assert len(again) == 1 and again[0].atomic
    slots = {c.args[1] for c in again[0].calls if isinstance(c, Command)}
    assert all("{tt}" in str(k) for k in slots)


def test_ttl_touches_the_whole_thread_inside_the_transaction() -> None:
    sent = trips(ops(ttl=TTL(minutes=2)).put(config(), checkpoint(), {}, {}))
    touch = [c for c in sent[0].calls if isinstance(c, ScriptCall)]
    assert len(touch) == 1 and touch[0].args[-1] == 120_000


def test_put_writes_never_overwrites_ordinary_writes_but_overwrites_special_ones() -> None:
    sent = trips(
        ops().put_writes(config(cid="c1"), [("a", 1), ("__error__", "boom"), ("b", 2)], "task")
    )
    assert len(sent) == 1 and sent[0].atomic
    # the writes hash is listed first, so deleting the thread always finds it
    assert names(sent[0]) == ["SADD", "HSETNX", "HSETNX", "HSET"]
    assert sent[0].calls[1].args[2] == "task:0"  # type: ignore[union-attr]
    assert sent[0].calls[3].args[2] == "task:-1"  # type: ignore[union-attr]


def test_get_tuple_is_one_script_call() -> None:
    sent = trips(ops().get_tuple(config()), replies=[[]])
    assert len(sent) == 1 and names(sent[0]) == ["read"]


@pytest.mark.parametrize(
    ("cfg", "error", "match"),
    [
        ({"configurable": {}}, ValueError, "thread_id"),
        ({}, ValueError, "configurable"),
        (config(thread=123), TypeError, "thread_id must be a str"),
        (config(ns=5), TypeError, "checkpoint_ns"),
        (config(cid=7), TypeError, "checkpoint_id"),
        (config(thread="\ud800"), ValueError, "thread_id is not valid Unicode"),
    ],
)
def test_bad_config_raises_before_any_round_trip(cfg: Any, error: type, match: str) -> None:
    plan = ops().put(cfg, checkpoint(), {}, {})
    with pytest.raises(error, match=match):
        next(plan)


def test_unserialisable_values_and_metadata_raise_before_any_round_trip() -> None:
    with pytest.raises(TypeError, match="channel 'a'"):
        next(ops().put(config(), checkpoint({"a": object()}), {}, {"a": 1}))
    with pytest.raises(ValueError, match=r"metadata\['bad'\]"):
        next(ops().put(config(), checkpoint(), {"bad": object()}, {}))  # type: ignore[typeddict-unknown-key]
    with pytest.raises(TypeError, match="write to 'ch'"):
        next(ops().put_writes(config(cid="c"), [("ok", 1), ("ch", object())], "t"))


def test_put_writes_needs_a_checkpoint_id() -> None:
    with pytest.raises(ValueError, match="checkpoint_id"):
        next(ops().put_writes(config(), [("a", 1)], "t"))


def test_prune_rejects_unknown_strategies() -> None:
    with pytest.raises(ValueError, match="strategy"):
        next(ops().prune(["t"], strategy="keep_some"))
    with pytest.raises(ValueError, match="keep_last"):
        next(ops().prune(["t"], keep_last=-1))


# ---- a full connection pool is no failover and no refusal --------------------------

FULL_POOLS = [
    MaxConnectionsError("Too many connections"),
    ConnectionError("No connection available."),  # redis-py's BlockingConnectionPool
    PoolTimeoutError(1, 0.5),
]


def detected() -> Operations:
    o = ops()
    o.capabilities = Capabilities(transactions=True, scripts=True)
    return o


@pytest.mark.parametrize("full", FULL_POOLS)
def test_a_full_pool_reaches_the_caller_at_once(full: Exception) -> None:
    plan = detected().guarded(lambda: detected().get_tuple(config()))
    next(plan)
    with pytest.raises(type(full)):
        plan.throw(full)  # no probe, no pause: the error itself


def test_a_lost_connection_is_still_retried() -> None:
    plan = detected().guarded(lambda: detected().get_tuple(config()))
    next(plan)
    probe = plan.throw(ConnectionError("Connection closed by server."))
    assert names(probe) == ["PING"]


@pytest.mark.parametrize("full", FULL_POOLS)
def test_a_full_pool_while_waiting_out_a_failover_reaches_the_caller(full: Exception) -> None:
    plan = detected().guarded(lambda: detected().get_tuple(config()))
    next(plan)
    plan.throw(ConnectionError("Connection closed by server."))  # the PING probe follows
    with pytest.raises(type(full)):
        plan.throw(full)


@pytest.mark.parametrize("full", FULL_POOLS)
@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_a_full_pool_during_detection_is_no_refusal(full: Exception, kind: str) -> None:
    """Else INFO would read as refused (a proxy, no search) and stay so."""
    plan = detect(KeyLayout("p"), kind)
    next(plan)  # INFO server
    with pytest.raises(type(full)):
        plan.throw(full)


@pytest.mark.parametrize("full", FULL_POOLS)
def test_a_full_pool_during_the_mode_probe_is_no_refusal(full: Exception) -> None:
    plan = probe_modes(KeyLayout("p"), "single")
    next(plan)  # PING
    plan.send(["PONG"])  # the MULTI probe
    with pytest.raises(type(full)):
        plan.throw(full)


def finish(plan: Plan[Any], how: Any) -> Any:
    """The plan's result after one more step (a reply list, or an error to throw)."""
    with pytest.raises(StopIteration) as done:
        plan.throw(how) if isinstance(how, BaseException) else plan.send(how)
    return done.value.value


def test_the_endpoint_of_a_url_is_asked_what_it_is_by_a_plan() -> None:
    plan = endpoint_kind(strict=False)
    assert names(next(plan)) == ["PING"]
    closed = ConnectionError("Connection closed by server.")
    assert finish(plan, closed) == ENDPOINT_REFUSED_HANDSHAKE  # a strict proxy
    strict = endpoint_kind(strict=True)
    next(strict)
    with pytest.raises(ConnectionError):  # with the strict handshake: nobody there
        strict.throw(closed)
    for info, kind in (({"cluster_enabled": 1}, ENDPOINT_CLUSTER), ({}, ENDPOINT_SINGLE)):
        plan = endpoint_kind(strict=False)
        next(plan)
        assert names(plan.send([b"PONG"])) == ["INFO"]
        assert finish(plan, [info]) == kind
    plan = endpoint_kind(strict=False)
    next(plan)
    plan.send([b"PONG"])
    assert finish(plan, ResponseError("ERR unknown command 'INFO'")) == ENDPOINT_SINGLE


TOPOLOGY_MOVING = [
    ClusterError("TTL exhausted."),
    ClusterDownError("The cluster is down"),
    SlotNotCoveredError("Slot 1234 not covered by the cluster."),
    TryAgainError("TRYAGAIN"),
    ReadOnlyError("You can't write against a read only replica."),
]


@pytest.mark.parametrize("moving", TOPOLOGY_MOVING, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_a_failover_under_the_mode_probe_is_no_refusal(moving: Exception, kind: str) -> None:
    """Else a failover met while probing again would switch the saver to a fallback
    mode for good (seen on redis-py 6.3: a cluster probe meeting ClusterError)."""
    for answered in (0, 1):  # the MULTI probe, then the Lua probe
        plan = probe_modes(KeyLayout("p"), kind)
        next(plan)  # PING
        plan.send(["PONG"])  # the MULTI probe
        if answered:
            plan.send([True, 1])  # the Lua probe
        with pytest.raises(type(moving)):
            plan.throw(moving)


def test_a_probe_refused_for_memory_is_no_refusal() -> None:
    plan = probe_modes(KeyLayout("p"), "single")
    next(plan)
    plan.send(["PONG"])
    plan.throw(OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    with pytest.raises(StopIteration) as done:
        plan.throw(OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    assert done.value.value == (True, True)


@pytest.mark.parametrize("limit", [1, 10])
def test_plain_reads_load_only_the_checkpoints_a_page_needs(limit: int) -> None:
    """Without a filter, a plain-command read of the newest ``limit`` checkpoints asks
    the registry for that many ids and loads only those (it used to load 64 to return
    one: 5 to 12 ms a get_tuple in the modes without scripts)."""
    from redis_cluster_saver import perkey, scripts

    keys = KeyLayout("p").thread("t")
    call = ScriptCall(
        scripts.READ, (keys.namespaces,), (keys.handle, "list", 0, limit, "", "", 1, "")
    )
    plan = perkey.read(call)
    first = next(plan)
    assert first.calls[0].args[-2:] == (0, limit)  # type: ignore[union-attr]
    ids = [f"id{i:03d}".encode() for i in range(limit)]
    loading = plan.send([ids])
    assert len(loading.calls) == 2 * limit  # a checkpoint hash and its writes, each


def test_a_filtered_plain_read_still_pages_through_the_registry() -> None:
    """With a filter, the read cannot know how many it passes over: it asks for a page."""
    from redis_cluster_saver import perkey, scripts

    keys = KeyLayout("p").thread("t")
    args = (keys.handle, "list", 0, 1, "", "", 1, "", b"m:source", b'"loop"')
    plan = perkey.read(ScriptCall(scripts.READ, (keys.namespaces,), args))
    assert next(plan).calls[0].args[-2:] == (0, perkey.BATCH)  # type: ignore[union-attr]
