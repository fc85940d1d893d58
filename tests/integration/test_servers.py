"""Each server and version under test against the features the saver uses there: the
README's "Servers and versions" table, checked on the real binaries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from langgraph.checkpoint.base import empty_checkpoint
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from cluster import available, start, stop
from cluster.topologies import cluster_view
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.plan import WriteMode
from tests.support.servers import url_of

from .conftest import FIXTURES, saver_options

DURABLE = {"replicas": 1, "timeout_ms": 500}


@dataclass(frozen=True)
class Row:
    """One row of the table: what the server answers, and the modes the saver picks."""

    server: str  # (server, version prefix) as the detector reports them
    version: str
    scripts: bool  # EVAL with a declared key
    multi: bool  # a same-slot MULTI/EXEC
    search: bool  # FT._LIST (RediSearch)
    durable: bool  # durability={"replicas": 1} accepted (WAIT answers, a replica exists)
    migrateslots: str  # what CLUSTER MIGRATESLOTS does here (see migrateslots())
    cmsgpack: bool  # Lua's cmsgpack library, which the read and write scripts answer with
    writes: str  # the saver's write mode
    reads: str  # "script" or "plain"


ROWS = {
    "standalone": Row(
        "valkey", "9.1", True, True, True, False, "cluster disabled", True, "transaction", "script"
    ),
    "cluster": Row(
        "valkey", "9.1", True, True, True, True, "refused by modules", True, "transaction", "script"
    ),
    "bare_cluster": Row(
        "valkey", "9.1", True, True, False, True, "yes", True, "transaction", "script"
    ),
    "sentinel": Row(
        "valkey", "9.1", True, True, True, True, "cluster disabled", True, "transaction", "script"
    ),
    "plain": Row("redis", "7.0", True, True, False, False, "absent", True, "transaction", "script"),
    "redis62": Row(
        "redis", "6.2", True, True, False, False, "absent", True, "transaction", "script"
    ),
    "proxy": Row(
        "unknown",
        "unknown",
        True,
        False,
        False,
        False,
        "refused by proxy",
        True,
        "script",
        "script",
    ),
}
FIXTURE = {**FIXTURES, "bare_cluster": "fresh_bare_cluster"}


def _client(deployment: Any) -> tuple[redis.Redis, str]:
    """A client of the server holding the data, and a key that server owns."""
    kwargs: dict[str, Any] = {"socket_timeout": 5.0, "retry": Retry(NoBackoff(), 0)}
    if deployment.topology == "proxy":
        return redis.Redis.from_url(deployment.url, **kwargs, **deployment.client_kwargs), "{p}k"
    node = deployment.primaries[0] if deployment.primaries else deployment.nodes[0]
    client = redis.Redis(host=node.host, port=node.port, **kwargs)
    if deployment.topology != "cluster":
        return client, "{p}k"
    (me,) = [v for v in cluster_view(node.port) if "myself" in v["flags"]]
    owned = {s for lo, hi in me["slots"] for s in range(lo, hi + 1)}
    key = next(k for i in range(100_000) if key_slot((k := f"{{p{i}}}k").encode()) in owned)
    return client, key


def _answers(client: redis.Redis, *args: Any) -> Any:
    """The reply, or None where the server (or a proxy, closing the connection) refuses."""
    try:
        return client.execute_command(*args)
    except (redis.ResponseError, redis.ConnectionError):
        return None


def _multi(client: redis.Redis, key: str) -> bool:
    pipe = client.pipeline(transaction=True)
    pipe.set(key, "1", ex=60)
    pipe.get(key)
    try:
        return pipe.execute() == [True, b"1"]
    except (redis.ResponseError, redis.ConnectionError):
        return False


def _packs(client: redis.Redis, key: str) -> bool:
    """Whether a script can answer with ``cmsgpack.pack``, as the saver's scripts do."""
    packed = _answers(client, "EVAL", "return cmsgpack.pack({KEYS[1], 1})", 1, key)
    return packed is not None and msgpack.unpackb(packed) == [key, 1]


def migrateslots(client: redis.Redis) -> str:
    """``absent`` (not in COMMAND INFO), or how a move of slot 1 to a node that does not
    exist is answered: ``yes`` (only the node is unknown), ``refused by modules``,
    ``cluster disabled``, ``refused by proxy`` (the connection closed)."""
    conn = client.connection_pool.get_connection()
    try:  # raw: redis-py's COMMAND INFO parser fails on the nil of an unknown command
        conn.send_command("COMMAND", "INFO", "cluster|migrateslots")
        info = conn.read_response()
    except redis.ConnectionError:
        return "refused by proxy"
    finally:
        client.connection_pool.release(conn)
    if info == [None]:
        return "absent"
    try:
        client.execute_command("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", 1, 1, "NODE", "0" * 40)
    except redis.ResponseError as exc:
        text = str(exc)
        if "Unknown node" in text:
            return "yes"
        if "does not support atomic slot migration" in text:
            return "refused by modules"
        if "cluster support disabled" in text:
            return "cluster disabled"
        return text
    raise AssertionError("a move to a node that does not exist was accepted")


@pytest.mark.parametrize("name", list(ROWS))
def test_server_features(request: pytest.FixtureRequest, name: str) -> None:
    deployment = request.getfixturevalue(FIXTURE[name])
    row = ROWS[name]
    client, key = _client(deployment)
    try:
        found = {
            "scripts": _answers(client, "EVAL", "return redis.call('EXISTS', KEYS[1])", 1, key)
            is not None,
            "multi": _multi(client, key),
            "search": _answers(client, "FT._LIST") is not None,
            "migrateslots": migrateslots(client),
            "cmsgpack": _packs(client, key),
        }
    finally:
        client.close()
    url = url_of(deployment)
    with RedisClusterSaver.from_conn_string(url, **saver_options(deployment)) as saver:
        caps = saver.capabilities
        assert caps is not None
        found["server"], found["version"] = caps.server, caps.version[: len(row.version)]
        found["writes"] = saver.ops.write_mode.value
        found["reads"] = "script" if saver.ops.mode.scripts else "plain"
    try:
        with RedisClusterSaver.from_conn_string(
            url, **saver_options(deployment, durability=DURABLE)
        ):
            found["durable"] = True
    except ValueError as exc:
        assert "durable mode cannot be honoured" in str(exc)
        found["durable"] = False
    assert found == {f: getattr(row, f) for f in found}


def test_without_cmsgpack_scripts_fail_with_the_servers_error(tmp_path: Path) -> None:
    """No server under test lacks cmsgpack; Redis 6.2 lets a script delete the global
    (7.0 made globals read-only), which stands in for a build without it. The saver's
    scripts then fail at their packed answer with the server's own error, raised as it
    is; ``scripts=False`` (MULTI writes, plain-command reads) runs there."""
    reason = available("redis62")
    if reason:
        pytest.skip(f"redis62 topology unavailable: {reason}")
    dep = start("redis62", tmp_path / "no-cmsgpack")
    try:
        with redis.Redis.from_url(dep.url) as admin:
            admin.eval("cmsgpack = nil", 0)
        config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        cp = empty_checkpoint()
        cp["channel_values"], cp["channel_versions"] = {"a": 1}, {"a": 1}
        prefix = uuid.uuid4().hex[:8]
        with RedisClusterSaver.from_conn_string(dep.url, key_prefix=prefix) as scripted:
            # a write with nothing to check goes as MULTI/EXEC on one endpoint
            scripted.put(config, cp, {"step": 1}, {"a": 1})
            with pytest.raises(redis.ResponseError, match="cmsgpack"):
                scripted.get_tuple(config)  # the read script's packed answer
        with RedisClusterSaver.from_conn_string(dep.url, key_prefix=prefix, scripts=False) as s:
            assert s.ops.write_mode is WriteMode.TRANSACTION
            assert s.get_tuple(config) is not None
            later = empty_checkpoint()
            later["channel_values"], later["channel_versions"] = {"a": 2}, {"a": 2}
            stored = s.put(config, later, {"step": 2}, {"a": 2})
            s.put_writes(stored, [("a", 2)], "task")
            tup = s.get_tuple(config)
            assert tup is not None and tup.checkpoint["channel_values"] == {"a": 2}
            assert len(tup.pending_writes or []) == 1
            assert len(list(s.list(None, filter={"step": 2}))) == 1
    finally:
        stop(dep)
