"""The sync and async savers: LangGraph's BaseCheckpointSaver over the shared plans."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from typing_extensions import Self

from .base import SaverBase
from .connection import ASYNC, SYNC, Connector, is_cluster_client
from .faces import async_iterating, awaitable, blocking, faced, from_another_thread
from .plan import Plan
from .pool import NodeBounds
from .shells import AsyncShell, SyncShell

T = TypeVar("T")
P = ParamSpec("P")


@faced(blocking)
class RedisClusterSaver(SaverBase):
    """Checkpoint saver for Redis Cluster, Sentinel, proxies and single servers (sync)."""

    def __init__(self, redis_url: str | None = None, **options: Any) -> None:
        super().__init__(redis_url, **options)
        if redis_url is not None:
            self.connector = Connector.of(
                SYNC, redis_url, self.connection_args, self.cluster_mode, self.pool_limits
            )
            self._attach(self.connector.client())
            self._connect()

    def _make_shell(self) -> None:
        self.shell = SyncShell(self.client, self.ops.mode)

    def _connect(self) -> None:
        """Ask the URL's endpoint what it is, and build the client it calls for."""
        while (plan := self._endpoint_plan()) is not None:
            old = self._adopt_endpoint(self.shell.run(plan))
            if old is not None:
                old.close()

    @classmethod
    @contextmanager
    def from_conn_string(cls, redis_url: str, **options: Any) -> Iterator[Self]:
        """Open a saver on a URL, set it up, and close its connections on exit."""
        saver = cls(redis_url, **options)
        try:
            saver.setup()
            yield saver
        finally:
            saver.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections the saver opened (a client passed in stays open)."""
        if self._owns_client:
            self.client.close()

    def _run(self, make: Callable[P, Plan[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        return self.shell.run(self.ops.guarded(make, *args, **kwargs))

    def setup(self) -> None:
        """Probe the server (topology, what it allows); nothing to create, so it is
        safe to call any number of times. Operations call it when needed."""
        self.shell.run(self.ops.setup())

    if TYPE_CHECKING:  # installed by @faced, from SaverBase's operations

        def prune(
            self, thread_ids: Sequence[str], *, strategy: str = ..., keep_last: int | None = ...
        ) -> None: ...
        def list_threads(self, *, limit: int | None = ..., offset: int = ...) -> list[str]: ...


@faced(from_another_thread)
@faced(awaitable, prefix="a", listing=async_iterating)
class AsyncRedisClusterSaver(SaverBase):
    """Checkpoint saver for Redis Cluster, Sentinel, proxies and single servers (asyncio).

    Given a URL, the saver asks the server whether it is a cluster node (and whether
    it refuses the default handshake, as strict proxies do) on first use: in
    ``asetup`` or the first operation, as the sync saver does in its constructor.

    Its sync methods (``get_tuple``, ``put``, ...), which LangGraph calls when a sync
    node of an async graph invokes a subgraph, work from any thread but the event
    loop's own: they run the async method on the saver's loop and wait for it. On
    the loop's thread they raise ``asyncio.InvalidStateError``, as LangGraph's own
    async savers do: there, await the ``a*`` method.
    """

    loop: asyncio.AbstractEventLoop | None
    """The event loop the saver runs on: the one it was created or last used on."""

    def __init__(self, redis_url: str | None = None, **options: Any) -> None:
        super().__init__(redis_url, **options)
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        if redis_url is not None:
            self.connector = Connector.of(
                ASYNC, redis_url, self.connection_args, self.cluster_mode, self.pool_limits
            )
            self._attach(self.connector.client())

    def _make_shell(self) -> None:
        self.shell = AsyncShell(self.client, self.ops.mode)
        if is_cluster_client(self.client):
            self.shell.bounds = NodeBounds.of(self.client, self.pool_limits)

    async def _connect(self) -> None:
        """Ask the URL's endpoint what it is (on first use: the constructor cannot
        wait), and build the client it calls for."""
        while (plan := self._endpoint_plan()) is not None:
            old = self._adopt_endpoint(await self.shell.run(plan))
            if old is not None:
                await old.aclose()

    @classmethod
    @asynccontextmanager
    async def from_conn_string(cls, redis_url: str, **options: Any) -> AsyncIterator[Self]:
        """Open a saver on a URL, set it up, and close its connections on exit."""
        saver = cls(redis_url, **options)
        try:
            await saver.asetup()
            yield saver
        finally:
            await saver.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections the saver opened (a client passed in stays open)."""
        await self.shell.aclose()
        if self._owns_client:
            await self.client.aclose()

    def _run(
        self, make: Callable[P, Plan[T]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """The shell's coroutine itself (no frame of its own around each operation),
        after the endpoint is asked what it is on first use."""
        plan = self.ops.guarded(make, *args, **kwargs)
        try:  # noqa: SIM105 - on every operation: no context manager
            self.loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync method's call from another thread: runs on self.loop
            pass
        if self.connector is not None and self.connector.asks:
            return self._connected(plan)
        return self.shell.run(plan)

    async def _connected(self, plan: Plan[T]) -> T:
        await self._connect()
        return await self.shell.run(plan)

    def _wait(self, method: str, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The sync face of ``a<method>``: ``call()`` run on the saver's loop, from
        another thread, waited for."""
        loop = self.loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is loop:
            raise asyncio.InvalidStateError(
                f"synchronous calls to AsyncRedisClusterSaver are only allowed from a "
                f"thread other than its event loop's; on the loop, use "
                f"`await saver.a{method}(...)` (or `await graph.ainvoke(...)`)"
            )
        if loop is None or loop.is_closed() or not loop.is_running():
            raise asyncio.InvalidStateError(
                f"AsyncRedisClusterSaver.{method} runs `a{method}` on the saver's event "
                "loop, and that loop is not running: use the saver inside its event "
                "loop (a sync call from another thread then waits for it), or use "
                "RedisClusterSaver in sync code"
            )
        return asyncio.run_coroutine_threadsafe(call(), loop).result()

    async def asetup(self) -> None:
        """Probe the server (topology, what it allows); nothing to create, so it is
        safe to call any number of times. Operations call it when needed."""
        await self._connect()
        await self.shell.run(self.ops.setup())

    # ---- sync methods: from other threads, on the saver's loop -------------------

    def setup(self) -> None:
        """:meth:`asetup` from another thread (see the class docstring)."""
        self._wait("setup", self.asetup)

    if TYPE_CHECKING:  # installed by @faced, from SaverBase's operations

        async def aprune(
            self, thread_ids: Sequence[str], *, strategy: str = ..., keep_last: int | None = ...
        ) -> None: ...
        async def alist_threads(
            self, *, limit: int | None = ..., offset: int = ...
        ) -> list[str]: ...
        def list_threads(self, *, limit: int | None = ..., offset: int = ...) -> list[str]: ...
