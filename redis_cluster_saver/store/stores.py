"""The sync and async stores: LangGraph's BaseStore over the store's plans.

Both build their client as the savers do (the same URLs, options, detector and
pools) and run :class:`~.plans.StorePlans` with the saver's shells. They differ
only in how they call the embedding model and how they wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import (
    BaseStore,
    IndexConfig,
    Op,
    Result,
    TTLConfig,
    validate_op_namespace,
)
from typing_extensions import Self

from ..connection import ASYNC, SYNC, Connector, Flavor, check_client, client_kind
from ..detector import Capabilities, endpoint_kind
from ..keys import KeyLayout
from ..options import TTL, Durability
from ..plan import Mode
from ..pool import DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_TIMEOUT, PoolLimits
from ..session import Session
from ..shells import AsyncShell, SyncShell
from .embedding import Index, Wanted, wanted
from .plans import DEFAULT_MAX_CANDIDATES, StorePlans
from .vectors import ALGORITHMS


def _ttl_config(ttl: Mapping[str, Any] | None) -> TTLConfig | None:
    if ttl is None:
        return None
    if not isinstance(ttl, Mapping):
        raise TypeError(f"ttl must be a dict like {{'default_ttl': 60}}, not {ttl!r}")
    unknown = set(ttl) - {"default_ttl", "refresh_on_read"}
    if unknown:
        raise ValueError(
            f"unknown ttl option(s): {', '.join(sorted(unknown))} (expiry is the "
            "server's own: no sweeper to configure)"
        )
    default = ttl.get("default_ttl")
    if default is not None and (
        isinstance(default, bool) or not isinstance(default, (int, float)) or default <= 0
    ):
        raise ValueError(f"ttl['default_ttl'] must be minutes > 0, not {default!r}")
    config: TTLConfig = {**ttl}  # type: ignore[typeddict-item]
    return config


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Store(BaseStore):
    """Options and plans; the subclasses add the I/O style."""

    supports_ttl = True
    flavor: Flavor

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_client: Any = None,
        index: IndexConfig | None = None,
        ttl: Mapping[str, Any] | None = None,
        key_prefix: str = "rcs",
        connection_args: Mapping[str, Any] | None = None,
        cluster_mode: bool | None = None,
        transactions: bool | None = None,
        scripts: bool | None = None,
        durability: Mapping[str, Any] | None = None,
        failover_wait: float = 15.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        search: bool | None = None,
        vector_algorithm: str = "FLAT",
    ) -> None:
        if (redis_url is None) == (redis_client is None):
            raise ValueError("pass exactly one of redis_url or redis_client")
        if (
            isinstance(max_candidates, bool)
            or not isinstance(max_candidates, int)
            or max_candidates < 1
        ):
            raise ValueError(f"max_candidates must be an int >= 1, not {max_candidates!r}")
        if vector_algorithm not in ALGORITHMS:
            raise ValueError(
                f"vector_algorithm must be one of {', '.join(ALGORITHMS)}, not {vector_algorithm!r}"
            )
        if search not in (None, True, False):
            raise ValueError(f"search must be None, True or False, not {search!r}")
        self.index = Index.parse(index)
        self.index_config = index
        self.ttl_config = _ttl_config(ttl)
        layout = KeyLayout(key_prefix)
        session = Session(
            layout,
            JsonPlusSerializer(),
            TTL(),
            transactions=transactions,
            scripts=scripts,
            use_search=False,
            durability=Durability.parse(durability),
            failover_wait=failover_wait,
        )
        self.plans = StorePlans(
            session,
            layout,
            max_candidates,
            dims=self.index.dims if self.index else None,
            use_search=search,
            algorithm=vector_algorithm,
        )
        self.pool_limits = PoolLimits.parse(max_connections, pool_timeout)
        self._owns_client = redis_client is None
        self.connector: Connector | None = None
        if redis_client is not None:
            check_client(redis_client)
            self._attach(redis_client)
        else:
            assert redis_url is not None
            self.connector = Connector.of(
                self.flavor, redis_url, dict(connection_args or {}), cluster_mode, self.pool_limits
            )
            self._attach(self.connector.client())

    def _attach(self, client: Any) -> None:
        self.client = client
        self.plans.session.client_kind = client_kind(client)
        self._make_shell(self.plans.session.mode)

    def _make_shell(self, mode: Mode) -> None:
        raise NotImplementedError

    @property
    def capabilities(self) -> Capabilities | None:
        """What the detector found (after setup or the first operation)."""
        return self.plans.session.capabilities

    def _prepared(self, ops: Iterable[Op]) -> tuple[list[Op], Wanted]:
        listed = list(ops)
        for op in listed:
            validate_op_namespace(op)
        return listed, wanted(listed, self.index)

    def _dims(self) -> int:
        assert self.index is not None
        return self.index.dims


class RedisClusterStore(_Store):
    """LangGraph long-term memory (``BaseStore``) on Redis Cluster, Sentinel, proxies and
    single servers (sync)."""

    flavor = SYNC

    def _make_shell(self, mode: Mode) -> None:
        self.shell = SyncShell(self.client, mode)

    @classmethod
    @contextmanager
    def from_conn_string(cls, redis_url: str, **options: Any) -> Iterator[Self]:
        """Open a store on a URL, set it up, and close its connections on exit."""
        store = cls(redis_url, **options)
        try:
            store.setup()
            yield store
        finally:
            store.close()

    def _connect(self) -> None:
        c = self.connector
        while c is not None and c.asks:
            client = c.answer(self.shell.run(endpoint_kind(c.strict)))
            if client is not None:
                old = self.client
                self._attach(client)
                old.close()

    def setup(self) -> None:
        """Probe the server (topology, what it allows) and create the vector index
        where the Search module runs."""
        self._connect()
        self.shell.run(self.plans.setup())

    def close(self) -> None:
        """Close the connections the store opened (a client passed in stays open)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        listed, want = self._prepared(ops)
        vectors: dict[int, dict[str, list[float]]] = {}
        queries: dict[int, list[float]] = {}
        if self.index is not None:
            if want.texts:
                embedded = self.index.embeddings.embed_documents(want.texts)
                vectors = want.vectors(embedded, self._dims())
            if want.queries:
                asked = [self.index.embeddings.embed_query(q) for q in want.queries]
                queries = want.query_vectors(listed, asked, self._dims())
        self._connect()
        plan = self.plans.session.guarded(self.plans.batch, listed, vectors, queries, _now_ms())
        return self.shell.run(plan)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """The sync batch, in a worker thread (the event loop is not blocked)."""
        listed = list(ops)
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, listed)


class AsyncRedisClusterStore(_Store):
    """LangGraph long-term memory (``BaseStore``) on Redis Cluster, Sentinel, proxies and
    single servers (asyncio). Its sync ``batch`` works from any thread but the event
    loop's own, as the async saver's sync methods do."""

    flavor = ASYNC

    def __init__(self, redis_url: str | None = None, **options: Any) -> None:
        super().__init__(redis_url, **options)
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def _make_shell(self, mode: Mode) -> None:
        self.shell = AsyncShell(self.client, mode)

    @classmethod
    @asynccontextmanager
    async def from_conn_string(cls, redis_url: str, **options: Any) -> AsyncIterator[Self]:
        """Open a store on a URL, set it up, and close its connections on exit."""
        store = cls(redis_url, **options)
        try:
            await store.setup()
            yield store
        finally:
            await store.aclose()

    async def _connect(self) -> None:
        self.loop = asyncio.get_running_loop()
        c = self.connector
        while c is not None and c.asks:
            client = c.answer(await self.shell.run(endpoint_kind(c.strict)))
            if client is not None:
                old = self.client
                self._attach(client)
                await old.aclose()

    async def setup(self) -> None:
        """Probe the server (topology, what it allows) and create the vector index
        where the Search module runs."""
        await self._connect()
        await self.shell.run(self.plans.setup())

    async def aclose(self) -> None:
        """Close the connections the store opened (a client passed in stays open)."""
        await self.shell.aclose()
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        listed, want = self._prepared(ops)
        vectors: dict[int, dict[str, list[float]]] = {}
        queries: dict[int, list[float]] = {}
        if self.index is not None:
            if want.texts:
                embedded = await self.index.embeddings.aembed_documents(want.texts)
                vectors = want.vectors(embedded, self._dims())
            if want.queries:
                asked = await asyncio.gather(
                    *(self.index.embeddings.aembed_query(q) for q in want.queries)
                )
                queries = want.query_vectors(listed, asked, self._dims())
        await self._connect()
        plan = self.plans.session.guarded(self.plans.batch, listed, vectors, queries, _now_ms())
        return await self.shell.run(plan)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """``abatch`` run on the store's loop from another thread, waited for."""
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            raise asyncio.InvalidStateError(
                "AsyncRedisClusterStore's sync methods run from another thread than the "
                "event loop's (await the a* methods there)"
            )
        listed = list(ops)
        return asyncio.run_coroutine_threadsafe(self.abatch(listed), loop).result()
