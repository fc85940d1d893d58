"""The sync and async savers: LangGraph's BaseCheckpointSaver over the shared plans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from typing_extensions import Self

from .commands import Plan
from .connection import async_client, is_cluster_client, sync_client
from .execution import AsyncShell, SyncShell
from .options import SaverBase
from .pool import NodeBounds

T = TypeVar("T")
P = ParamSpec("P")


class RedisClusterSaver(SaverBase):
    """Checkpoint saver for Redis Cluster, Sentinel, proxies and single servers (sync)."""

    def __init__(self, redis_url: str | None = None, **options: Any) -> None:
        super().__init__(redis_url, **options)
        if redis_url is not None:
            self._attach(
                sync_client(redis_url, self.connection_args, self.cluster_mode, self.pool_limits)
            )
        self.shell = SyncShell(self.client, self.ops.mode)

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

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint of ``config`` (without an id: its namespace's latest); one round trip."""
        return self._run(self.ops.get_tuple, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first: of one thread (one or all namespaces), or of all threads."""
        yield from self._run(
            self.ops.list_checkpoints, config, filter=filter, before=before, limit=limit
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed, atomically, in one round trip."""
        return self._run(self.ops.put, config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes; ordinary writes never overwrite, special ones do."""
        self._run(self.ops.put_writes, config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        """Delete every key of a thread."""
        self._run(self.ops.delete_thread, thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) made by these runs, thread by thread."""
        self._run(self.ops.delete_for_runs, run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread's whole history (every namespace, parent chain and writes)."""
        self._run(self.ops.copy_thread, source_thread_id, target_thread_id)

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        """``keep_latest`` (per namespace), ``delete``, or ``keep_last=N`` newest.

        Ancestors a kept checkpoint needs to rebuild DeltaChannel state are kept too.
        """
        self._run(self.ops.prune, thread_ids, strategy, keep_last)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Writes and seed of delta channels along the parent chain, in one round trip."""
        return self._run(self.ops.delta_channel_history, config, channels)


class AsyncRedisClusterSaver(SaverBase):
    """Checkpoint saver for Redis Cluster, Sentinel, proxies and single servers (asyncio).

    Given a URL, the constructor asks the server once (blocking, a few
    milliseconds) whether it is a cluster node, as the sync saver does.
    """

    def __init__(self, redis_url: str | None = None, **options: Any) -> None:
        super().__init__(redis_url, **options)
        if redis_url is not None:
            self._attach(
                async_client(redis_url, self.connection_args, self.cluster_mode, self.pool_limits)
            )
        self.shell = AsyncShell(self.client, self.ops.mode)
        if is_cluster_client(self.client):
            self.shell.bounds = NodeBounds.of(self.client, self.pool_limits)

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
        if self._owns_client:
            await self.client.aclose()

    def _run(
        self, make: Callable[P, Plan[T]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """The operation's coroutine (the caller awaits it: no coroutine of its own,
        which would stay alive across every round trip of the operation)."""
        return self.shell.run(self.ops.guarded(make, *args, **kwargs))

    async def asetup(self) -> None:
        """Probe the server (topology, what it allows); nothing to create, so it is
        safe to call any number of times. Operations call it when needed."""
        await self.shell.run(self.ops.setup())

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint of ``config`` (without an id: its namespace's latest); one round trip."""
        return await self._run(self.ops.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first: of one thread (one or all namespaces), or of all threads."""
        for item in await self._run(
            self.ops.list_checkpoints, config, filter=filter, before=before, limit=limit
        ):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed, atomically, in one round trip."""
        return await self._run(self.ops.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes; ordinary writes never overwrite, special ones do."""
        await self._run(self.ops.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every key of a thread."""
        await self._run(self.ops.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) made by these runs, thread by thread."""
        await self._run(self.ops.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread's whole history (every namespace, parent chain and writes)."""
        await self._run(self.ops.copy_thread, source_thread_id, target_thread_id)

    async def aprune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        """``keep_latest`` (per namespace), ``delete``, or ``keep_last=N`` newest.

        Ancestors a kept checkpoint needs to rebuild DeltaChannel state are kept too.
        """
        await self._run(self.ops.prune, thread_ids, strategy, keep_last)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Writes and seed of delta channels along the parent chain, in one round trip."""
        return await self._run(self.ops.delta_channel_history, config, channels)
