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
    ("redis62", {}),
    ("cluster", {}),
    ("sentinel", {}),
    ("proxy", {}),
    ("cluster", {"transactions": False, "scripts": False}),
    ("cluster", {"transactions": False}),
]
IDS = [t + "".join(f"-no-{k}" for k in o) for t, o in CASES]


@pytest.mark.parametrize("style", ["async", "sync"])
@pytest.mark.parametrize(("topology", "forced"), CASES, ids=IDS)
async def test_saver_passes_every_capability(
    request: pytest.FixtureRequest, topology: str, forced: dict[str, Any], style: str
) -> None:
    """The async saver as it is; the sync saver through the async API the suite calls
    (SyncDriven), so every assertion checks the sync code path."""
    deployment = deployment_for(request, topology)
    url, options = url_of(deployment), saver_options(deployment, **forced)
    name = "AsyncRedisClusterSaver" if style == "async" else "RedisClusterSaver"

    @checkpointer_test(name=f"{name}[{topology}{forced or ''}]")
    async def factory() -> AsyncIterator[Any]:
        if style == "async":
            async with AsyncRedisClusterSaver.from_conn_string(url, **options) as saver:
                yield saver
        else:
            with RedisClusterSaver.from_conn_string(url, **options) as sync_saver:
                yield SyncDriven(sync_saver)

    assert_all_passed(await validate(factory))
