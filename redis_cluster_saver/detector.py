"""What the saver talks to, found out once with harmless commands.

Managed services and proxies refuse some commands, sometimes by closing the
connection: every probe treats a refusal as an answer ("not allowed" or
"unknown"), never as a crash. Probes only touch one key under the saver's prefix
(``<prefix>:{probe}:detect``), which they delete again; no FLUSH, no KEYS.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import (
    ConnectionError,
    OutOfMemoryError,
    RedisClusterException,
    RedisError,
    TimeoutError,
)

from .connection import (
    ENDPOINT_CLUSTER,
    ENDPOINT_REFUSED_HANDSHAKE,
    ENDPOINT_SINGLE,
    cluster_enabled,
)
from .errors import pool_exhausted
from .failures import Failure, classify, refused_for_state
from .keys import KeyLayout
from .plan import Command, LuaScript, Plan, RoundTrip, ScriptCall, WriteMode, one

logger = logging.getLogger("redis_cluster_saver")

PING_SCRIPT = LuaScript("ping", "return redis.call('EXISTS', KEYS[1]) + 1")


@dataclass
class Capabilities:
    """The detector's findings. ``None`` means "could not tell" (a refused probe)."""

    server: str = "unknown"
    version: str = "unknown"
    topology: str = "standalone"
    enterprise: bool = False
    transactions: bool | None = None
    scripts: bool | None = None
    search: bool | None = None
    search_all_shards: bool | None = None
    json: bool | None = None
    replicas: int | None = None
    """Replicas of every primary (the smallest count on a cluster)."""
    maxmemory_policies: tuple[str, ...] = ()
    """``maxmemory_policy`` of every primary (each distinct one once); empty when no
    INFO was allowed (a proxy, an ACL): unknown."""
    notes: list[str] = field(default_factory=list)

    def evicts(self, ttl: bool) -> bool | None:
        """Whether the server may evict the saver's keys (None: unknown). With ``ttl``
        every key of the saver carries an expiry, which volatile-* policies evict."""
        if not self.maxmemory_policies:
            return None
        return any(evictable(p, ttl) for p in self.maxmemory_policies)

    def eviction_problem(self, ttl: bool) -> str | None:
        """What is wrong and what to set, where the saver's keys may be evicted."""
        if not self.evicts(ttl):
            return None
        policies = ", ".join(p for p in self.maxmemory_policies if evictable(p, ttl))
        with_ttl = " (every key of a saver with a ttl carries an expiry)" if ttl else ""
        return (
            f"the server may evict the saver's keys: maxmemory-policy {policies}{with_ttl}; "
            "a thread that lost some keys fails to read (ThreadDamagedError) and one that "
            "lost all reads as empty. Set `maxmemory-policy noeviction` (writes then fail "
            "with OOM instead of data going), or a volatile-* policy without the saver's ttl"
        )

    def write_mode(self, transactions: bool | None, scripts: bool | None) -> WriteMode:
        """How writes run, honouring what the user forced: MULTI wherever it is
        allowed, one script where only Lua is, plain commands where both are refused."""
        multi = self.transactions if transactions is None else transactions
        if multi:
            return WriteMode.TRANSACTION
        if self.read_scripts(scripts):
            return WriteMode.SCRIPT
        return WriteMode.PER_KEY

    def read_scripts(self, scripts: bool | None) -> bool:
        """Whether reads and maintenance run as scripts, decided apart from writes."""
        return bool(self.scripts if scripts is None else scripts)

    def rows(self) -> list[tuple[str, str]]:
        """(what, finding) pairs for people: the doctor's table."""

        def yes(v: bool | None) -> str:
            return "unknown" if v is None else ("yes" if v else "no")

        return [
            ("server", f"{self.server} {self.version}"),
            ("topology", self.topology + (" (Redis Enterprise)" if self.enterprise else "")),
            ("MULTI/EXEC on one slot", yes(self.transactions)),
            ("Lua scripts", yes(self.scripts)),
            ("Search module", yes(self.search)),
            ("search sees all shards", yes(self.search_all_shards)),
            ("JSON module", yes(self.json)),
            ("replicas per primary", "unknown" if self.replicas is None else str(self.replicas)),
            ("maxmemory-policy", ", ".join(self.maxmemory_policies) or "unknown"),
            ("writes", self.write_mode(None, None).value),
            ("reads", "script" if self.read_scripts(None) else "plain"),
        ]


def evictable(policy: str, ttl: bool) -> bool:
    """May keys be evicted under ``policy``? allkeys-* evict any key, volatile-* those
    with an expiry (all of the saver's when it has a ttl); a policy this code does not
    know is taken to evict."""
    if policy == "noeviction":
        return False
    if policy.startswith("volatile-"):
        return ttl
    return True


def _info(reply: Any) -> Mapping[str, Any]:
    """INFO from one node (a cluster client answers per node)."""
    if isinstance(reply, Mapping) and reply and all(isinstance(v, Mapping) for v in reply.values()):
        return next(iter(reply.values()))
    return reply if isinstance(reply, Mapping) else {}


def _read_server(caps: Capabilities, info: Mapping[str, Any]) -> None:
    if "valkey_version" in info or info.get("server_name") == "valkey":
        caps.server, caps.version = "valkey", str(info.get("valkey_version", "?"))
    elif "redis_version" in info:
        caps.server, caps.version = "redis", str(info["redis_version"])
    if "rlec_version" in info:
        caps.enterprise = True
        caps.notes.append(f"rlec_version {info['rlec_version']} in INFO")


def _attempt(trip: RoundTrip) -> Plan[tuple[bool, Any]]:
    """(True, replies) if the trip ran, (False, error) if it was refused, by an
    error or by a closed connection (strict proxies close it on what they refuse)."""
    try:
        replies = yield trip
    except (RedisError, RedisClusterException) as exc:
        if pool_exhausted(exc):
            raise  # the client's own limit says nothing of the server
        return False, exc
    return True, replies


MOVING_OR_LOST = (Failure.LOST, Failure.MOVING)


def _allowed(trip: RoundTrip, client_kind: str) -> Plan[bool]:
    """Does the server run this trip? A refusal is an error reply, or, from a strict
    proxy, a connection closed twice on this request while the endpoint answers PING
    in between. A cluster node refuses with an error, so there a lost connection is
    a failover in progress: it propagates and the caller waits it out, as do the
    errors of a topology in motion (a redis-py cluster client meeting a failover
    raises ClusterError, SlotNotCoveredError, ...), which are no refusal either."""
    for _ in range(2):
        try:
            yield trip
            return True
        except (ConnectionError, TimeoutError) as exc:
            if client_kind == "cluster" or pool_exhausted(exc):
                raise
            yield one(Command.keyless("PING"))  # raises if nothing answers at all
        except OutOfMemoryError:
            return True  # taken, and refused for want of memory only: no refusal
        except (RedisError, RedisClusterException) as exc:
            if refused_for_state(exc):
                return True  # refused for want of replicas (say): no refusal of the mode
            if pool_exhausted(exc) or classify(exc) in MOVING_OR_LOST:
                raise  # the topology moving under the probe (a failover) proves nothing
            return False
    return False


def probe_modes(
    layout: KeyLayout, client_kind: str = "single", known_multi: bool | None = None
) -> Plan[tuple[bool, bool]]:
    """Are same-slot MULTI/EXEC and Lua allowed? Raises if the server is down:
    a probe that fails only because nothing answers proves nothing. With
    ``known_multi`` the MULTI probe is skipped and that answer kept."""
    key = layout.probe_key()
    yield one(Command.keyless("PING"))
    if known_multi is not None:
        lua = yield from _allowed(one(ScriptCall(PING_SCRIPT, (key,), ())), client_kind)
        return known_multi, lua
    multi = yield from _allowed(
        RoundTrip(
            (Command.of("SET", key, "1", "PX", 10_000), Command.of("DEL", key)),
            atomic=True,
            force_multi=True,
        ),
        client_kind,
    )
    lua = yield from _allowed(one(ScriptCall(PING_SCRIPT, (key,), ())), client_kind)
    return multi, lua


def _replicas(client_kind: str) -> Plan[tuple[int | None, Any]]:
    """Replicas behind each primary: CLUSTER SLOTS on a cluster (its reply comes
    along, None if refused), INFO elsewhere."""
    if client_kind == "cluster":
        ok, reply = yield from _attempt(one(Command.keyless("CLUSTER", "SLOTS")))
        if not ok:
            return None, None
        return min((len(r) - 3 for r in reply[0]), default=0), reply[0]
    ok, reply = yield from _attempt(one(Command.keyless("INFO", "replication")))
    if not ok:
        return None, None
    return int(_info(reply[0]).get("connected_slaves", 0)), None


def _policy(info: Mapping[str, Any]) -> str | None:
    policy = info.get("maxmemory_policy")
    if isinstance(policy, bytes):
        policy = policy.decode()
    return str(policy) if policy else None


def primary_routes(slots: Any) -> list[str]:
    """A key hashing to a slot of each primary, from a CLUSTER SLOTS reply
    ([start, end, [host, port, id], replicas...] per range): keyless commands
    routed by it reach that primary."""
    from redis.crc import key_slot

    owned: dict[tuple[Any, Any], list[tuple[int, int]]] = {}
    for entry in slots:
        owned.setdefault((entry[2][0], entry[2][1]), []).append((int(entry[0]), int(entry[1])))
    routes = []
    for ranges in owned.values():
        i = 0
        while not any(a <= key_slot(f"{{node{i}}}".encode()) <= b for a, b in ranges):
            i += 1
        routes.append(f"{{node{i}}}")
    return routes


def _policies(caps: Capabilities, slots: Any, first: str | None) -> Plan[tuple[str, ...]]:
    """Every primary's ``maxmemory_policy``: on a cluster ``INFO memory`` from each
    primary (a refusal leaves that one unknown); elsewhere the detector's first INFO
    (``first``) already said it."""
    if slots is None:
        return (first,) if first else ()
    found: set[str] = set()
    unknown = 0
    for route in primary_routes(slots):
        ok, reply = yield from _attempt(one(Command.routed(route, "INFO", "memory")))
        policy = _policy(_info(reply[0])) if ok else None
        if policy:
            found.add(policy)
        else:
            unknown += 1
    if unknown and found:
        caps.notes.append(f"maxmemory-policy unknown on {unknown} primary(ies): INFO refused")
    return tuple(sorted(found))


def endpoint_kind(strict: bool) -> Plan[str]:
    """What one URL names, asked through a single-endpoint client: a cluster node, or
    one endpoint; and whether the client's default handshake (HELLO 3, CLIENT
    SETINFO) is refused, which strict proxies answer by closing the connection. With
    the strict handshake already (``strict``), a closed connection is the server's
    absence and propagates."""
    try:
        yield one(Command.keyless("PING"))
    except ConnectionError:
        if strict:
            raise
        return ENDPOINT_REFUSED_HANDSHAKE
    ok, reply = yield from _attempt(one(Command.keyless("INFO", "cluster")))
    if ok and cluster_enabled(_info(reply[0])):
        return ENDPOINT_CLUSTER
    return ENDPOINT_SINGLE  # a proxy may refuse INFO: it is one endpoint then


def detect(layout: KeyLayout, client_kind: str) -> Plan[Capabilities]:
    """Probe once: ``client_kind`` is 'cluster', 'sentinel' or 'single'."""
    caps = Capabilities(
        topology={"cluster": "cluster", "sentinel": "sentinel"}.get(client_kind, "standalone")
    )
    # INFO's default sections: the server's name and version, and its maxmemory-policy
    # (every version answers them in one reply; several named sections need 7.0)
    ok, reply = yield from _attempt(one(Command.keyless("INFO")))
    first = None
    if ok:
        _read_server(caps, _info(reply[0]))
        first = _policy(_info(reply[0]))
    else:
        caps.notes.append("INFO refused")
    if client_kind == "single":
        ok_cluster, reply = yield from _attempt(one(Command.keyless("INFO", "cluster")))
        if ok_cluster and cluster_enabled(_info(reply[0])):
            caps.topology = "cluster-node"
            caps.notes.append("a cluster node reached through a single-node client")
        elif not ok or caps.enterprise:
            caps.topology = "proxy"
    caps.replicas, slots = yield from _replicas(client_kind)
    caps.maxmemory_policies = yield from _policies(caps, slots, first)
    caps.transactions, caps.scripts = yield from probe_modes(layout, client_kind)
    if caps.transactions is False and client_kind == "single":
        caps.topology = "proxy"
    ok, _ = yield from _attempt(one(Command.keyless("FT._LIST")))
    caps.search = ok
    ok, _ = yield from _attempt(one(Command.of("JSON.TYPE", layout.probe_key())))
    caps.json = ok
    if caps.search:
        if caps.topology == "cluster":
            # a search coordinator answers FT.SEARCH across shards and exposes the
            # shard-local _FT.SEARCH; without it each shard searches only itself
            ok, reply = yield from _attempt(
                one(Command.keyless("_FT.SEARCH", layout.probe_index(), "*"))
            )
            caps.search_all_shards = ok or "unknown command" not in str(reply).lower()
        else:
            caps.search_all_shards = caps.topology != "proxy"
    return caps


class ModeLog:
    """Logs each fallback once per saver, at WARNING, with its reason."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def fallback(self, writes: WriteMode, scripts: bool, reason: str) -> None:
        said = f"{writes.value}/{scripts}"
        if (writes is WriteMode.TRANSACTION and scripts) or said in self.said:
            return
        self.said.add(said)
        how = {
            WriteMode.TRANSACTION: "MULTI/EXEC",
            WriteMode.SCRIPT: "one Lua script per write (still atomic)",
            WriteMode.PER_KEY: "per-key commands (data first, registry last)",
        }[writes]
        reads = "same-slot scripts" if scripts else "plain commands (scripts are refused)"
        logger.warning(
            "redis-cluster-saver: %s; running writes as %s and reads as %s", reason, how, reads
        )

    def eviction(self, caps: Capabilities, ttl: bool) -> None:
        """Warn once per saver where the server may evict the saver's keys."""
        problem = caps.eviction_problem(ttl)
        if problem is None or "eviction" in self.said:
            return
        self.said.add("eviction")
        logger.warning("redis-cluster-saver: %s", problem)
