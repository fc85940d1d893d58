"""Construction options shared by the sync and async savers."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol

from .connection import check_client, client_kind
from .detector import Capabilities
from .keys import KeyLayout
from .operations import TTL, Durability, Operations, next_version
from .pool import DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_TIMEOUT, PoolLimits


class SaverBase(BaseCheckpointSaver[str]):
    """Options, plans and versioning; the subclasses add only the I/O style.

    Pass ``redis_url`` or ``redis_client`` (with ``decode_responses=False``). Options:
    ``key_prefix``; ``ttl={"default_ttl": minutes, "refresh_on_read": bool}``;
    ``connection_args`` for redis-py; ``cluster_mode`` to force a cluster or a single
    endpoint; ``transactions=False`` / ``scripts=False`` to forbid MULTI or Lua;
    ``search=False`` to never use a search index; ``durability={"replicas": n,
    "timeout_ms": t}``; ``failover_wait`` seconds; ``list_deltas=False`` to store every list whole;
    ``max_connections`` per server (per node on a cluster, default 64) and
    ``pool_timeout`` (seconds a caller waits for a free one, default 10) for the
    clients the saver builds; ``serde``. README.md has details.

    A client passed in keeps its own pool; an asyncio cluster client, whose nodes
    cannot queue, is bounded per node by the saver within half its own per-node
    limit (and within ``max_connections``).
    """

    ops: Operations

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_client: Any = None,
        connection_args: Mapping[str, Any] | None = None,
        ttl: Mapping[str, Any] | None = None,
        key_prefix: str = "rcs",
        cluster_mode: bool | None = None,
        transactions: bool | None = None,
        scripts: bool | None = None,
        search: bool | None = None,
        durability: Mapping[str, Any] | None = None,
        failover_wait: float = 15.0,
        list_deltas: bool = True,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if (redis_url is None) == (redis_client is None):
            raise ValueError("pass exactly one of redis_url or redis_client")
        self.pool_limits = PoolLimits.parse(max_connections, pool_timeout)
        if redis_client is not None:
            check_client(redis_client)
        self.redis_url = redis_url
        self.connection_args = dict(connection_args or {})
        self.cluster_mode = cluster_mode
        self.ops = Operations(
            KeyLayout(key_prefix),
            self.serde,
            TTL.parse(ttl),
            transactions=transactions,
            scripts=scripts,
            use_search=search,
            durability=Durability.parse(durability),
            failover_wait=failover_wait,
            list_deltas=bool(list_deltas),
        )
        self._owns_client = redis_client is None
        if redis_client is not None:
            self._attach(redis_client)

    def _attach(self, client: Any) -> None:
        self.client = client
        self.ops.client_kind = client_kind(client)

    @property
    def capabilities(self) -> Capabilities | None:
        """What the detector found (after setup or the first operation)."""
        return self.ops.capabilities

    def get_next_version(self, current: str | None, channel: None = None) -> str:
        return next_version(current)

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> Any:
        clone = super().with_allowlist(extra_allowlist)
        if clone is not self:
            clone.ops = dataclasses.replace(self.ops, serde=clone.serde)  # type: ignore[attr-defined]
        return clone
