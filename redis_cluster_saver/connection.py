"""Building redis-py clients from URLs: plain, TLS, Sentinel, and clusters.

``redis://host:port`` may name a standalone server, a proxy or one node of an
OSS cluster: with ``cluster_mode=None`` the server is asked (``INFO cluster``) and
a cluster client is built when it says so. Several comma-separated seeds always
mean a cluster. ``redis+sentinel://h1:p1,h2:p2/service[/db]`` resolves the
primary through Sentinel and follows failovers.

The clients built here queue for a connection (see pool.py): at most
``max_connections`` per server, per node on a cluster, and a caller waits up to
``pool_timeout`` seconds for one to come free.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff

from .pool import (
    CLUSTER_NODE_HEADROOM,
    AsyncQueuedPool,
    AsyncQueuedSentinelPool,
    PoolLimits,
    QueuedPool,
    QueuedSentinelPool,
)

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True)
class Endpoint:
    """What a URL names, before any connection is made."""

    url: str
    scheme: str
    seeds: list[tuple[str, int]]
    db: int = 0
    service: str | None = None
    auth: dict[str, Any] = field(default_factory=dict)

    @property
    def sentinel(self) -> bool:
        return self.scheme in SENTINEL_SCHEMES

    @property
    def first_url(self) -> str:
        """The URL with only its first seed, for redis-py's own parser."""
        parts = urlsplit(self.url)
        netloc = parts.netloc.split(",")[0]
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        if userinfo and "@" not in netloc:
            netloc = userinfo + netloc
        return parts._replace(netloc=netloc).geturl()


def parse_url(url: str) -> Endpoint:
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"not a Redis URL: {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", *SENTINEL_SCHEMES, "unix"):
        raise ValueError(
            f"unsupported URL scheme {scheme!r}: use redis://, rediss:// or redis+sentinel://"
        )
    hostinfo = parts.netloc.rsplit("@", 1)[-1]
    auth: dict[str, Any] = {}
    if "@" in parts.netloc:
        user, _, password = parts.netloc.rsplit("@", 1)[0].partition(":")
        if user:
            auth["username"] = unquote(user)
        if password:
            auth["password"] = unquote(password)
    default_port = 26379 if scheme in SENTINEL_SCHEMES else 6379
    seeds = []
    for item in filter(None, hostinfo.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        seeds.append((host or "127.0.0.1", int(port) if port else default_port))
    path = [p for p in parts.path.split("/") if p]
    if scheme in SENTINEL_SCHEMES:
        if not path:
            raise ValueError(f"a Sentinel URL needs the service name: {url!r}")
        return Endpoint(url, scheme, seeds, int(path[1]) if len(path) > 1 else 0, path[0], auth)
    return Endpoint(url, scheme, seeds, int(path[0]) if path else 0, None, auth)


def client_args(connection_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Stored values are binary, so replies must stay bytes."""
    args = dict(connection_args or {})
    if args.get("decode_responses"):
        raise ValueError("decode_responses=True is not supported: the saver stores binary values")
    for name in ("max_connections", "connection_pool", "connection_pool_class"):
        if name in args:
            raise ValueError(
                f"{name} in connection_args is not supported: the saver builds its pools "
                "(use its max_connections and pool_timeout options, or pass a ready client)"
            )
    args["decode_responses"] = False
    return args


CLOSED_CLIENT = (
    "the Redis cluster client is closed (redis-py's sync RedisCluster cannot be used "
    "after close()): give the saver an open client, or a URL, and close it after use"
)


def is_closed(client: Any) -> bool:
    """A sync cluster client after ``close()``, which has forgotten its default node
    (every keyless command then fails inside redis-py). Other clients reconnect."""
    if not isinstance(client, redis.cluster.RedisCluster):
        return False
    manager = getattr(client, "nodes_manager", None)
    return manager is not None and getattr(manager, "default_node", None) is None


def check_client(client: Any) -> None:
    """A client handed in must be open and return bytes, or binary values would be
    corrupted."""
    if is_closed(client):
        raise ValueError(CLOSED_CLIENT)
    try:
        kwargs = client.get_connection_kwargs()
    except AttributeError:
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if kwargs.get("decode_responses"):
        raise ValueError(
            "the Redis client must be created with decode_responses=False: "
            "the saver stores binary values"
        )


def is_cluster_client(client: Any) -> bool:
    return isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


def client_kind(client: Any) -> str:
    """'cluster', 'sentinel' (a master_for client) or 'single'."""
    if is_cluster_client(client):
        return "cluster"
    pool = getattr(client, "connection_pool", None)
    pools = (redis.sentinel.SentinelConnectionPool, redis.asyncio.sentinel.SentinelConnectionPool)
    return "sentinel" if isinstance(pool, pools) else "single"


def cluster_enabled(info: Any) -> bool:
    return isinstance(info, Mapping) and str(info.get("cluster_enabled", "0")) == "1"


@dataclass(frozen=True)
class Flavor:
    """The client classes of one I/O style (sync or asyncio)."""

    redis: Any
    cluster: Any
    node: Any
    sentinel: Any
    pool: Any
    sentinel_pool: Any
    retry: Any
    """redis-py's Retry class of this style (its sync and asyncio ones differ)."""

    def no_retry(self) -> Any:
        """What the clients the saver builds retry on their own: nothing. redis-py
        retries a timeout or a lost connection three times by default, with backoff
        from 1 s (and a cluster client relearns its slot map before each try), so a
        call to a stalled server waited seconds however small ``socket_timeout`` was.
        The saver retries lost connections and slot moves itself, within
        ``failover_wait``, and never a timeout."""
        return self.retry(NoBackoff(), 0)

    def cluster_pools(self, limits: PoolLimits) -> dict[str, Any]:
        """How a cluster client's nodes queue: the sync client takes a pool class
        for its nodes; the asyncio one cannot block (the saver bounds it, see
        NodeBounds), so its own limit only leaves room above the saver's bound."""
        if self.cluster is redis.asyncio.cluster.RedisCluster:
            return {"max_connections": limits.max_connections * CLUSTER_NODE_HEADROOM}
        return {"connection_pool_class": self.pool, **limits.blocking()}


SYNC = Flavor(
    redis.Redis,
    redis.cluster.RedisCluster,
    redis.cluster.ClusterNode,
    redis.sentinel.Sentinel,
    QueuedPool,
    QueuedSentinelPool,
    redis.retry.Retry,
)
ASYNC = Flavor(
    redis.asyncio.Redis,
    redis.asyncio.cluster.RedisCluster,
    redis.asyncio.cluster.ClusterNode,
    redis.asyncio.sentinel.Sentinel,
    AsyncQueuedPool,
    AsyncQueuedSentinelPool,
    redis.asyncio.retry.Retry,
)
STRICT_PROXY_ARGS: dict[str, Any] = (
    {"protocol": 2, "driver_info": None}  # redis-py 7+ spelling (lib_name is deprecated)
    if "driver_info" in inspect.signature(redis.connection.AbstractConnection.__init__).parameters
    else {"protocol": 2, "lib_name": None, "lib_version": None}
)
"""What a strict proxy needs (twemproxy closes the connection on HELLO and CLIENT)."""


def needs_probe(endpoint: Endpoint, cluster_mode: bool | None) -> bool:
    return cluster_mode is None and not endpoint.sentinel and len(endpoint.seeds) <= 1


def build(
    flavor: Flavor,
    endpoint: Endpoint,
    args: dict[str, Any],
    cluster_mode: bool,
    limits: PoolLimits | None = None,
) -> Any:
    limits = limits or PoolLimits()
    args = {"retry": flavor.no_retry(), **args}  # a retry in connection_args is kept
    if endpoint.sentinel:
        keep = ("socket_timeout", "socket_connect_timeout", "protocol")
        sentinel = flavor.sentinel(
            endpoint.seeds,
            sentinel_kwargs={k: v for k, v in args.items() if k in keep},
            **endpoint.auth,
            **args,
        )
        return sentinel.master_for(
            endpoint.service,
            db=endpoint.db,
            connection_pool_class=flavor.sentinel_pool,
            **limits.blocking(),
        )
    if cluster_mode or len(endpoint.seeds) > 1:
        nodes = [flavor.node(h, p) for h, p in endpoint.seeds]
        return flavor.cluster.from_url(
            endpoint.first_url, startup_nodes=nodes, **args, **flavor.cluster_pools(limits)
        )
    return flavor.redis.from_pool(flavor.pool.from_url(endpoint.url, **args, **limits.blocking()))


ENDPOINT_REFUSED_HANDSHAKE = "refused handshake"
ENDPOINT_CLUSTER = "cluster node"
ENDPOINT_SINGLE = "single endpoint"


@dataclass
class Connector:
    """Builds the client of a saver given a URL. What one URL names (a cluster node, or
    one endpoint that may be a strict proxy refusing the default handshake) the
    detector finds out (``detector.endpoint_kind``, run by either shell): this only
    builds the client each answer calls for."""

    flavor: Flavor
    endpoint: Endpoint
    args: dict[str, Any]
    cluster_mode: bool | None
    limits: PoolLimits | None = None
    asks: bool = False
    """The endpoint still has to be asked what it is."""
    strict: bool = False
    """The client speaks RESP2 without CLIENT SETINFO (what a strict proxy needs)."""

    @classmethod
    def of(
        cls,
        flavor: Flavor,
        url: str,
        connection_args: Mapping[str, Any] | None,
        cluster_mode: bool | None,
        limits: PoolLimits | None,
    ) -> Connector:
        endpoint = parse_url(url)
        asks = needs_probe(endpoint, cluster_mode)
        return cls(flavor, endpoint, client_args(connection_args), cluster_mode, limits, asks)

    def client(self, cluster: bool | None = None) -> Any:
        wanted = bool(self.cluster_mode) if cluster is None else cluster
        return build(self.flavor, self.endpoint, self.args, wanted, self.limits)

    def answer(self, kind: str) -> Any | None:
        """The client the endpoint's answer calls for (None: the one in use serves)."""
        if kind == ENDPOINT_REFUSED_HANDSHAKE:
            self.args.update(STRICT_PROXY_ARGS)
            self.strict = True
            return self.client(cluster=False)
        self.asks = False
        return self.client(cluster=True) if kind == ENDPOINT_CLUSTER else None
