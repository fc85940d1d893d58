"""Construction options shared by the sync and async savers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
)
from langgraph.checkpoint.serde.base import SerializerProtocol, maybe_add_typed_methods
from typing_extensions import Self

from .connection import Connector, check_client, client_kind
from .detector import Capabilities, endpoint_kind
from .keys import KeyLayout
from .operations import Operations
from .options import TTL, Durability, Retention
from .plan import Plan
from .pool import DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_TIMEOUT, PoolLimits
from .versions import next_version


class SaverBase(BaseCheckpointSaver[str]):
    """Options, plans and versioning; the subclasses add only the I/O style.

    Pass ``redis_url`` or ``redis_client`` (with ``decode_responses=False``). Options:
    ``key_prefix`` (a string or a :class:`KeyLayout`); ``ttl={"default_ttl": minutes,
    "refresh_on_read": bool}`` or a :class:`TTL`;
    ``connection_args`` for redis-py; ``cluster_mode`` to force a cluster or a single
    endpoint; ``transactions=False`` / ``scripts=False`` to forbid MULTI or Lua;
    ``search=False`` to never use a search index; ``durability={"replicas": n,
    "timeout_ms": t}``; ``retention={"keep_last": n}`` to keep only a namespace's n
    newest checkpoints, pruned by each put in its own write; ``failover_wait`` seconds;
    ``list_deltas=False`` to store every list whole;
    ``max_connections`` per server (per node on a cluster, default 64) and
    ``pool_timeout`` (seconds a caller waits for a free one, default 10) for the
    clients the saver builds; ``serde`` (or assign ``saver.serde`` later: every
    later read and write uses it). README.md has details.

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
        ttl: Mapping[str, Any] | TTL | None = None,
        key_prefix: str | KeyLayout = "rcs",
        cluster_mode: bool | None = None,
        transactions: bool | None = None,
        scripts: bool | None = None,
        search: bool | None = None,
        durability: Mapping[str, Any] | None = None,
        retention: Mapping[str, Any] | Retention | None = None,
        failover_wait: float = 15.0,
        list_deltas: bool = True,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)  # kept aside by the property until ops exists
        if (redis_url is None) == (redis_client is None):
            raise ValueError("pass exactly one of redis_url or redis_client")
        self.pool_limits = PoolLimits.parse(max_connections, pool_timeout)
        if redis_client is not None:
            check_client(redis_client)
        self.redis_url = redis_url
        self.connection_args = dict(connection_args or {})
        self.cluster_mode = cluster_mode
        self.ops = Operations(
            key_prefix if isinstance(key_prefix, KeyLayout) else KeyLayout(key_prefix),
            self.serde,
            TTL.parse(ttl),
            transactions=transactions,
            scripts=scripts,
            use_search=search,
            durability=Durability.parse(durability),
            retention=Retention.parse(retention),
            failover_wait=failover_wait,
            list_deltas=bool(list_deltas),
        )
        vars(self).pop("_initial_serde", None)
        self._owns_client = redis_client is None
        if redis_client is not None:
            self._attach(redis_client)

    def _attach(self, client: Any) -> None:
        self.client = client
        self.ops.client_kind = client_kind(client)
        self._make_shell()

    def _make_shell(self) -> None:
        """The shell that sends this saver's plans over ``self.client``."""
        raise NotImplementedError

    connector: Connector | None = None
    """How the client of a URL is built, while its endpoint has still to be asked."""

    def _endpoint_plan(self) -> Plan[str] | None:
        """The detector's question about a URL's endpoint, while there is one to ask."""
        c = self.connector
        return endpoint_kind(c.strict) if c is not None and c.asks else None

    def _adopt_endpoint(self, kind: str) -> Any | None:
        """Build the client the endpoint's answer calls for; returns the client it
        replaces (for the caller to close), or None."""
        assert self.connector is not None
        client = self.connector.answer(kind)
        if client is None:
            return None
        old = self.client
        self._attach(client)
        return old

    @property
    def capabilities(self) -> Capabilities | None:
        """What the detector found (after setup or the first operation)."""
        return self.ops.capabilities

    def get_next_version(self, current: str | None, channel: None = None) -> str:
        return next_version(current)

    @property
    def serde(self) -> SerializerProtocol:
        """The serializer of every read and write. Assigning one (as LangGraph's own
        fixtures do, ``saver.serde = EncryptedSerializer(...)``) takes effect at once:
        the plans hold no copy of their own."""
        ops = vars(self).get("ops")
        if ops is not None:
            return ops.serde  # type: ignore[no-any-return]
        return vars(self).get("_initial_serde", BaseCheckpointSaver.serde)  # type: ignore[no-any-return]

    @serde.setter
    def serde(self, value: SerializerProtocol) -> None:
        typed = maybe_add_typed_methods(value)
        ops = vars(self).get("ops")
        if ops is None:
            self._initial_serde = typed
        else:
            ops.serde = typed

    def __copy__(self) -> Self:
        """A clone with plans of its own (sharing the client, the detected mode and
        the caches), so that assigning the clone a serializer (``with_allowlist``)
        leaves this saver's alone."""
        clone = object.__new__(type(self))
        vars(clone).update(vars(self))
        clone.ops = dataclasses.replace(self.ops)
        return clone
