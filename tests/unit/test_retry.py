"""The retry policy and the failure table, without a server or a clock."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    MasterDownError,
    MaxConnectionsError,
    MovedError,
    NoPermissionError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from redis_cluster_saver.detector import Capabilities
from redis_cluster_saver.errors import PoolTimeoutError, SlotMigrationError
from redis_cluster_saver.failures import Failure, classify, migrating, slots_in_motion
from redis_cluster_saver.keys import KeyLayout
from redis_cluster_saver.operations import Operations
from redis_cluster_saver.plan import Command, Plan, RoundTrip, ScriptCall, pause
from redis_cluster_saver.retry import LOST_PAUSE, MOVING_PAUSE, Decision, Retries, Step
from redis_cluster_saver.scripts import READ

CASES = [
    (ConnectionError("Connection closed by server."), Failure.LOST),
    (TryAgainError("TRYAGAIN"), Failure.MOVING),
    (MovedError("3999 127.0.0.1:7001"), Failure.MOVING),
    (AskError("3999 127.0.0.1:7001"), Failure.MOVING),
    (ClusterDownError("CLUSTERDOWN The cluster is down"), Failure.MOVING),
    (ReadOnlyError("READONLY You can't write against a read only replica."), Failure.MOVING),
    (
        ResponseError("Attempted to access a non local key in a cluster node script"),
        Failure.MOVING,
    ),
    (
        ResponseError("Script attempted to execute a command while the cluster is down"),
        Failure.MOVING,
    ),
    (
        NoPermissionError("NOPERM this user has no permissions to run the 'eval' command"),
        Failure.REFUSED,
    ),
    (ResponseError("ERR unknown command 'MULTI'"), Failure.REFUSED),
    (
        ResponseError(
            "CROSSSLOT Keys in request don't hash to the same slot (context='within MULTI')"
        ),
        Failure.REFUSED,
    ),
    (TimeoutError("Timeout reading from socket"), None),
    (MaxConnectionsError("Too many connections"), None),
    (ConnectionError("No connection available."), None),
    (PoolTimeoutError(4, 1.0), None),
    (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), None),
    (ValueError("not a redis error"), None),
    # refusals for the server's state: no refusal of a mode, and no failover
    (ResponseError("NOREPLICAS Not enough good replicas to write."), None),
    (
        ResponseError("NOREPLICAS Not enough good replicas to write. script: on @user_script:255."),
        None,
    ),
    (
        MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
        None,
    ),
    (ResponseError("BUSY Valkey is busy running a script."), None),
    # the asyncio pipeline quotes the reply after the command and its arguments
    (
        ResponseError(
            "Command # 1 (SET rcs:{probe}:detect 1 PX 10000) of pipeline caused error: "
            "('NOREPLICAS Not enough good replicas to write.',)"
        ),
        None,
    ),
    # a state code among a command's arguments is not the server's reply
    (
        ResponseError("ERR unknown command 'EVAL', with args beginning with: 'NOREPLICAS '"),
        Failure.REFUSED,
    ),
]


@pytest.mark.parametrize(
    ("exc", "failure"), CASES, ids=[type(e).__name__ + str(i) for i, (e, _) in enumerate(CASES)]
)
def test_each_error_is_sorted_into_its_kind(exc: BaseException, failure: Failure | None) -> None:
    assert classify(exc) is failure


def test_a_slot_in_motion_is_waited_out_until_failover_wait() -> None:
    retries = Retries(began=100.0, failover_wait=5.0)
    assert retries.after(Failure.MOVING, 100.0) == Decision(Step.PAUSE, MOVING_PAUSE)
    assert retries.after(Failure.MOVING, 104.9) == Decision(Step.PAUSE, MOVING_PAUSE)
    assert retries.after(Failure.MOVING, 105.0) == Decision(Step.RAISE)


def test_errors_that_are_not_failovers_raise_at_once() -> None:
    assert Retries(0.0, 60.0).after(None, 0.0) == Decision(Step.RAISE)


@pytest.mark.parametrize("failure", [Failure.LOST, Failure.REFUSED])
def test_a_lost_connection_or_a_refusal_re_probes_first(failure: Failure) -> None:
    assert Retries(0.0, 5.0).after(failure, 0.0) == Decision(Step.REPROBE)
    assert Retries(0.0, 5.0).after(failure, 99.0) == Decision(Step.REPROBE)


def test_after_the_probe_a_new_mode_is_tried_at_once() -> None:
    retries = Retries(0.0, 5.0)
    for failure in (Failure.LOST, Failure.REFUSED):
        assert retries.probed(failure, mode_changed=True, now=1.0) == Decision(Step.RETRY)
        assert retries.probed(failure, mode_changed=True, now=50.0) == Decision(Step.RETRY)


def test_the_same_mode_again_only_after_a_lost_connection_until_the_time_is_up() -> None:
    retries = Retries(0.0, 5.0)
    assert retries.probed(Failure.LOST, False, 1.0) == Decision(Step.PAUSE, LOST_PAUSE)
    assert retries.probed(Failure.LOST, False, 5.0) == Decision(Step.RAISE)
    assert retries.probed(Failure.REFUSED, False, 1.0) == Decision(Step.RAISE)


def test_an_unreachable_server_during_the_probe_is_waited_for() -> None:
    retries = Retries(10.0, 2.0)
    assert retries.probe_failed(11.0) == Decision(Step.PAUSE, LOST_PAUSE)
    assert retries.probe_failed(12.0) == Decision(Step.RAISE)


def test_guarded_carries_the_policy_out_by_the_injected_clock() -> None:
    ops = Operations(KeyLayout("p"), JsonPlusSerializer(), failover_wait=1.0)
    ops.capabilities = Capabilities(transactions=True, scripts=True)
    now = [0.0]
    ops.clock = lambda: now[0]
    attempts: list[int] = []

    def moving() -> Plan[None]:
        attempts.append(1)
        if len(attempts) > 99:
            yield pause(0)  # never: makes this a plan
        raise TryAgainError("TRYAGAIN")

    plan = ops.guarded(moving)
    assert plan.send(None).pause == MOVING_PAUSE
    now[0] = 0.5
    assert plan.send([]).pause == MOVING_PAUSE
    now[0] = 1.0
    with pytest.raises(SlotMigrationError) as raised:
        plan.send([])
    assert isinstance(raised.value.__cause__, TryAgainError)
    assert len(attempts) == 3


MIGRATING = [
    TryAgainError("Multiple keys request during rehashing of slot"),
    AskError("3999 127.0.0.1:7001"),
    MovedError("3999 127.0.0.1:7001"),
    ResponseError("Attempted to access a non local key in a cluster node script"),
    ClusterError("TTL exhausted."),
]
NOT_MIGRATING = [
    ClusterDownError("CLUSTERDOWN The cluster is down"),
    ReadOnlyError("READONLY You can't write against a read only replica."),
    ClusterError("the cluster's topology changed under the call (boom)"),
    ConnectionError("Connection closed by server."),
    TimeoutError("Timeout reading from socket"),
    ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
]


@pytest.mark.parametrize("exc", MIGRATING, ids=lambda e: type(e).__name__)
def test_what_a_half_done_migration_raises_is_told_apart(exc: BaseException) -> None:
    assert classify(exc) is Failure.MOVING
    assert migrating(exc)


@pytest.mark.parametrize("exc", NOT_MIGRATING, ids=lambda e: type(e).__name__)
def test_failovers_and_other_errors_are_no_migration(exc: BaseException) -> None:
    assert not migrating(exc)


KEYS = KeyLayout("p").thread("t1")
SLOT = key_slot(KEYS.namespaces.encode())


def read_trip(*threads: str) -> RoundTrip:
    return RoundTrip(
        tuple(ScriptCall(READ, (KeyLayout("p").thread(t).namespaces,), ("x",)) for t in threads)
    )


def test_the_slot_in_motion_is_the_errors_or_that_of_the_trip_it_came_back_from() -> None:
    trip = read_trip("t1")
    assert slots_in_motion(AskError("42 127.0.0.1:7001"), trip) == (42,)
    assert slots_in_motion(MovedError("43 127.0.0.1:7001"), None) == (43,)
    assert slots_in_motion(TryAgainError("TRYAGAIN"), trip) == (SLOT,)
    assert slots_in_motion(TryAgainError("TRYAGAIN"), None) == ()
    across = read_trip("t1", "t2", "t1")
    two = tuple(sorted({SLOT, key_slot(KeyLayout("p").thread("t2").namespaces.encode())}))
    assert slots_in_motion(ClusterError("TTL exhausted."), across) == two
    commands = RoundTrip(
        (
            Command.keyless("CLUSTER", "INFO"),
            Command.routed(KEYS.registry(""), "FT.SEARCH", "idx", "*"),
            Command.of("PING"),
            Command.of("HGETALL", KEYS.blobs("")),
        )
    )
    assert slots_in_motion(TryAgainError("TRYAGAIN"), commands) == (SLOT,)


def moving_ops(now: list[float]) -> Operations:
    ops = Operations(KeyLayout("p"), JsonPlusSerializer(), failover_wait=2.0)
    ops.capabilities = Capabilities(transactions=True, scripts=True)
    ops.clock = lambda: now[0]
    return ops


def reading() -> Plan[str]:
    yield read_trip("t1")
    return "read"


def test_a_slot_still_moving_after_failover_wait_raises_a_clear_error_from_the_raw_one() -> None:
    now = [0.0]
    plan = moving_ops(now).guarded(reading)
    assert plan.send(None) == read_trip("t1")
    for t in (0.0, 1.0, 1.99):  # waited out until failover_wait, never raised before
        now[0] = t
        assert plan.throw(TryAgainError("TRYAGAIN")).pause == MOVING_PAUSE
        assert plan.send([]) == read_trip("t1")
    now[0] = 2.0
    raw = TryAgainError("Multiple keys request during rehashing of slot")
    with pytest.raises(SlotMigrationError) as raised:
        plan.throw(raw)
    err = raised.value
    assert err.__cause__ is raw and isinstance(err, ClusterError)
    assert err.slots == (SLOT,) and err.waited == 2.0
    text = str(err)
    assert f"slot {SLOT} stayed in motion for failover_wait=2 s" in text
    assert "`redis-cli --cluster fix <host:port>`" in text and "valkey-cli --cluster fix" in text
    assert f"CLUSTER SETSLOT {SLOT} NODE" in text and f"CLUSTER SETSLOT {SLOT} STABLE" in text
    assert str(raw) in text


def test_an_ask_names_its_own_slot_and_node_in_the_fix() -> None:
    now = [5.0]
    plan = moving_ops(now).guarded(reading)
    plan.send(None)
    now[0] = 7.0
    with pytest.raises(SlotMigrationError) as raised:
        plan.throw(AskError("3999 127.0.0.1:7001"))
    assert raised.value.slots == (3999,)
    assert "`redis-cli --cluster fix 127.0.0.1:7001`" in str(raised.value)


@pytest.mark.parametrize(
    "exc",
    [
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        ReadOnlyError("READONLY You can't write against a read only replica."),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_failover_still_under_way_after_failover_wait_keeps_its_own_error(
    exc: BaseException,
) -> None:
    now = [0.0]
    plan = moving_ops(now).guarded(reading)
    plan.send(None)
    now[0] = 2.0
    with pytest.raises(type(exc)) as raised:
        plan.throw(exc)
    assert raised.value is exc


def test_a_plan_under_guard_sees_its_errors_and_replies_as_they_came() -> None:
    seen: list[object] = []

    def probing() -> Plan[list[object]]:
        try:
            yield read_trip("t1")
        except TimeoutError as exc:  # a plan may catch what a trip raised, and go on
            seen.append(exc)
        seen.append((yield read_trip("t2")))
        return seen

    plan = moving_ops([0.0]).guarded(probing)
    assert plan.send(None) == read_trip("t1")
    timeout = TimeoutError("Timeout reading from socket")
    assert plan.throw(timeout) == read_trip("t2")
    with pytest.raises(StopIteration) as done:
        plan.send(["reply"])
    assert done.value.value == [timeout, ["reply"]]

    closed: list[bool] = []

    def closing() -> Plan[None]:
        try:
            yield read_trip("t1")
        finally:
            closed.append(True)

    guarded = moving_ops([0.0]).guarded(closing)
    guarded.send(None)
    guarded.close()
    assert closed == [True]
