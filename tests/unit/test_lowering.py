"""The one place that decides what a round trip puts on the wire, per mode."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from redis_cluster_saver import scripts
from redis_cluster_saver.lowering import CHUNK, Shape, as_script, lower
from redis_cluster_saver.plan import (
    Command,
    LuaScript,
    Mode,
    Require,
    RoundTrip,
    ScriptCall,
    WriteMode,
    pause,
)

K = "p:{t}:cp"
WRITE = (Command.of("HSET", K, "f", "v"), Command.of("ZADD", "p:{t}:idx", 1, "m"))
SCRIPTS = Mode(WriteMode.TRANSACTION, scripts=True)
MULTI_ONLY = Mode(WriteMode.TRANSACTION, scripts=False)
SCRIPT_ONLY = Mode(WriteMode.SCRIPT, scripts=True)
PER_KEY = Mode(WriteMode.PER_KEY, scripts=False)


def packed(*replies: Any) -> bytes:
    return msgpack.packb(list(replies))  # type: ignore[no-any-return]


def test_a_trip_without_calls_is_a_pause() -> None:
    low = lower(pause(0.25), SCRIPTS)
    assert low.shape is Shape.PAUSE and low.pause == 0.25 and low.replies([]) == []


def test_one_call_goes_alone_and_only_writes_of_one_key_are_routed_by_it() -> None:
    read = lower(RoundTrip((Command.of("HGET", K, "f"),)), SCRIPTS)
    assert read.shape is Shape.ONE and read.one == Command.of("HGET", K, "f")
    assert read.route is None  # the client routes reads (and may use replicas)
    listed = lower(RoundTrip((Command.of("SADD", "p:dir", "t"),)), SCRIPTS)
    assert listed.route == "p:dir"
    call = ScriptCall(scripts.APPLY, (K,), (1, "PING"))
    script = lower(RoundTrip((call,)), PER_KEY)
    assert script.one is call and script.route == K
    assert script.replies(["raw"]) == ["raw"]


@pytest.mark.parametrize("mode", [SCRIPTS, SCRIPT_ONLY], ids=["transaction", "script"])
def test_an_atomic_trip_is_one_apply_script_wherever_scripts_run(mode: Mode) -> None:
    """Sync and async send this same call: MULTI/EXEC only where scripts are refused."""
    low = lower(RoundTrip(WRITE, atomic=True), mode)
    assert low.shape is Shape.ONE and low.calls == ()
    assert isinstance(low.one, ScriptCall) and low.one.script is scripts.APPLY_PLAIN
    assert low.one.keys == (K, "p:{t}:idx")  # every key it touches, declared
    assert low.one.args == (4, "HSET", K, "f", "v", 4, "ZADD", "p:{t}:idx", 1, "m")
    assert low.route == K
    assert low.replies([packed(1, 1)]) == [1, 1]


def test_on_one_endpoint_an_atomic_trip_of_plain_commands_is_multi_exec() -> None:
    """Where the client talks to one endpoint and MULTI runs, a write of plain commands
    goes as MULTI/EXEC even though scripts run: one packet either way, and the server
    spends less than on APPLY (26 against 67 us a put_writes on valkey 9.1). A write
    that must check a precondition, or runs a script inline, stays one APPLY call; a
    cluster client keeps APPLY, which declares its keys to a slot in motion."""
    single = Mode(WriteMode.TRANSACTION, scripts=True, one_endpoint=True)
    low = lower(RoundTrip(WRITE, atomic=True), single)
    assert low.shape is Shape.TRANSACTION and low.calls == WRITE and low.one is None
    checked = lower(RoundTrip((Require(K, ("f",)), *WRITE), atomic=True), single)
    assert checked.shape is Shape.ONE and isinstance(checked.one, ScriptCall)
    touch = ScriptCall(scripts.TOUCH, (K,), ("h", 5))
    inline = lower(RoundTrip((*WRITE, touch), atomic=True), single)
    assert inline.shape is Shape.ONE and inline.one.script is scripts.APPLY  # type: ignore[union-attr]
    script_only = Mode(WriteMode.SCRIPT, scripts=True, one_endpoint=True)
    assert lower(RoundTrip(WRITE, atomic=True), script_only).shape is Shape.ONE
    durable = lower(RoundTrip(WRITE, atomic=True, wait=(1, 100)), single)
    assert [c.args[0] for c in durable.calls] == ["MULTI", "HSET", "ZADD", "EXEC", "WAIT"]


def test_an_atomic_trip_is_multi_exec_where_only_transactions_run() -> None:
    low = lower(RoundTrip(WRITE, atomic=True), MULTI_ONLY)
    assert low.shape is Shape.TRANSACTION and low.calls == WRITE and low.one is None
    assert low.replies([1, 1]) == [1, 1]


def test_an_atomic_trip_is_its_plain_commands_where_both_are_refused() -> None:
    low = lower(RoundTrip(WRITE, atomic=True), PER_KEY)
    assert low.shape is Shape.PIPELINE and low.calls == WRITE


def test_a_trip_with_a_precondition_is_a_script_whatever_the_mode() -> None:
    trip = RoundTrip((Require(K, ("a", "b")), *WRITE), atomic=True)
    low = lower(trip, MULTI_ONLY)
    assert low.shape is Shape.ONE and isinstance(low.one, ScriptCall)
    assert low.one.args[:4] == (4, "__require__", K, "a")
    refused = low.replies([packed([b"b"])])
    assert refused == [[b"b"]]  # nothing applied: the missing fields come first
    assert low.replies([packed(1, 1, 1)]) == [1, 1, 1]


def test_a_precondition_cannot_go_as_plain_commands() -> None:
    with pytest.raises(ValueError, match="precondition"):
        lower(RoundTrip((Require(K, ("a",)), *WRITE)), SCRIPTS)


def test_the_detectors_probe_is_multi_exec_in_every_mode() -> None:
    low = lower(RoundTrip(WRITE, force_multi=True), SCRIPT_ONLY)
    assert low.shape is Shape.TRANSACTION and low.calls == WRITE


def test_scripts_inside_a_batch_ride_as_eval() -> None:
    call = ScriptCall(scripts.APPLY, (K,), (1, "PING"))
    low = lower(RoundTrip((call, Command.of("HGET", K, "f"))), SCRIPTS)
    assert low.shape is Shape.PIPELINE
    assert low.calls[0].args == ("EVAL", scripts.APPLY.source, 1, K, 1, "PING")


def test_a_long_command_goes_to_apply_in_pieces_and_answers_once() -> None:
    pairs = [x for i in range(CHUNK * 2 + 10) for x in (f"f{i}", "v")]
    trip = RoundTrip((Command.of("HSET", K, *pairs), Command.of("SADD", K + "s", "m")), atomic=True)
    script, pieces = as_script(trip)
    assert pieces == (3, 1)
    heads = [i for i, a in enumerate(script.args) if a == "HSET"]
    assert len(heads) == 3
    low = lower(trip, SCRIPTS)
    assert low.replies([packed(1000, 1000, 10, 1)]) == [10, 1]


def test_only_scripts_apply_runs_inline_may_join_a_write() -> None:
    other = ScriptCall(LuaScript("other", "return 1"), (K,), ())
    with pytest.raises(ValueError, match="other"):
        lower(RoundTrip((other, *WRITE), atomic=True), SCRIPTS)
    touch = ScriptCall(scripts.TOUCH, (K,), ("p:{t}", 60000))
    low = lower(RoundTrip((*WRITE, touch), atomic=True), SCRIPTS)
    assert isinstance(low.one, ScriptCall)
    assert low.one.args[-4:] == (3, "__touch__", "p:{t}", 60000)


def test_a_durable_write_is_its_write_then_wait_on_one_node_connection() -> None:
    trip = RoundTrip(WRITE, atomic=True, wait=(1, 500))
    scripted = lower(trip, SCRIPTS)
    assert scripted.shape is Shape.NODE and scripted.route == K
    assert [c.args[0] for c in scripted.calls] == ["EVAL", "WAIT"]
    assert scripted.calls[-1].args == ("WAIT", 1, 500)
    assert scripted.replies([packed(1, 1), 1]) == [1, 1, 1]
    multi = lower(trip, MULTI_ONLY)
    assert [c.args[0] for c in multi.calls] == ["MULTI", "HSET", "ZADD", "EXEC", "WAIT"]
    assert multi.replies([b"OK", b"QUEUED", b"QUEUED", [1, 1], 0]) == [1, 1, 0]
    plain = lower(trip, PER_KEY)
    assert [c.args[0] for c in plain.calls] == ["HSET", "ZADD", "WAIT"]
    assert plain.replies([1, 1, 1]) == [1, 1, 1]


def test_an_error_inside_exec_is_raised() -> None:
    multi = lower(RoundTrip(WRITE, atomic=True, wait=(1, 500)), MULTI_ONLY)
    failed = ValueError("WRONGTYPE")
    with pytest.raises(ValueError, match="WRONGTYPE"):
        multi.replies([b"OK", b"QUEUED", b"QUEUED", [1, failed], 0])


def test_a_write_that_runs_no_script_inline_goes_as_apply_without_its_helpers() -> None:
    """Defining the helpers of '__touch__' and '__retain__' costs each call of APPLY
    server CPU; a write that needs neither goes as the same body without them."""
    assert "local function" not in scripts.APPLY_PLAIN.source
    assert scripts.APPLY.source.endswith(scripts.APPLY_PLAIN.source)
    plain, _ = as_script(RoundTrip(WRITE, atomic=True))
    assert plain.script is scripts.APPLY_PLAIN
    touch = ScriptCall(scripts.TOUCH, (K,), ("h", 5))
    inline, _ = as_script(RoundTrip((*WRITE, touch), atomic=True))
    assert inline.script is scripts.APPLY
