"""langgraph-checkpoint-conformance: every capability, async saver and sync saver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from tests.support.conformance import SyncDriven, assert_all_passed
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

# (topology, forced options): every topology as detected, and the fallback modes
# forced on a cluster: per key (no MULTI, no scripts) and script (no MULTI)
CASES = [
    ("standalone", {}),
    ("plain", {}),
    ("cluster", {}),
    ("sentinel", {}),
    ("proxy", {}),
    ("cluster", {"transactions": False, "scripts": False}),
    ("cluster", {"transactions": False}),
]
IDS = [t + "".join(f"-no-{k}" for k in o) for t, o in CASES]


@pytest.mark.parametrize(("topology", "forced"), CASES, ids=IDS)
async def test_async_saver_passes_every_capability(
    request: pytest.FixtureRequest, topology: str, forced: dict[str, Any]
) -> None:
    deployment = deployment_for(request, topology)

    @checkpointer_test(name=f"AsyncRedisClusterSaver[{topology}{forced or ''}]")
    async def factory() -> AsyncIterator[AsyncRedisClusterSaver]:
        async with AsyncRedisClusterSaver.from_conn_string(
            url_of(deployment), **saver_options(deployment, **forced)
        ) as saver:
            yield saver

    assert_all_passed(await validate(factory))


@pytest.mark.parametrize(("topology", "forced"), CASES, ids=IDS)
async def test_sync_saver_passes_every_capability(
    request: pytest.FixtureRequest, topology: str, forced: dict[str, Any]
) -> None:
    deployment = deployment_for(request, topology)

    @checkpointer_test(name=f"RedisClusterSaver[{topology}{forced or ''}]")
    async def factory() -> AsyncIterator[SyncDriven]:
        with RedisClusterSaver.from_conn_string(
            url_of(deployment), **saver_options(deployment, **forced)
        ) as saver:
            yield SyncDriven(saver)

    assert_all_passed(await validate(factory))
