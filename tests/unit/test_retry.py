"""The retry policy and the failure table, without a server or a clock."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MaxConnectionsError,
    MovedError,
    NoPermissionError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from redis_cluster_saver.detector import Capabilities
from redis_cluster_saver.errors import PoolTimeoutError
from redis_cluster_saver.failures import Failure, classify
from redis_cluster_saver.keys import KeyLayout
from redis_cluster_saver.operations import Operations
from redis_cluster_saver.plan import Plan, pause
from redis_cluster_saver.retry import LOST_PAUSE, MOVING_PAUSE, Decision, Retries, Step

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
    with pytest.raises(TryAgainError):
        plan.send([])
    assert len(attempts) == 3
