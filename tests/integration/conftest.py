"""Savers on real servers. Each test gets its own key prefix, so tests never see
each other's data even though the servers are shared by the whole session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

# topology name -> fixture of cluster.pytest_plugin
FIXTURES = {
    "standalone": "standalone",
    "plain": "plain",
    "redis62": "redis62",
    "cluster": "redis_cluster",
    "sentinel": "sentinel",
    "proxy": "proxy",
}
SAVER_TOPOLOGIES = ["standalone", "cluster"]


def deployment_for(request: pytest.FixtureRequest, topology: str) -> Any:
    return request.getfixturevalue(FIXTURES[topology])


def saver_options(deployment: Any, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"key_prefix": f"t{uuid.uuid4().hex[:10]}"}
    if deployment.client_kwargs:
        options["connection_args"] = dict(deployment.client_kwargs)
    options.update(extra)
    return options


@pytest.fixture(params=SAVER_TOPOLOGIES)
def deployment(request: pytest.FixtureRequest) -> Any:
    return deployment_for(request, request.param)


@pytest.fixture
def sync_saver(deployment: Any) -> Iterator[RedisClusterSaver]:
    with RedisClusterSaver.from_conn_string(deployment.url, **saver_options(deployment)) as saver:
        yield saver


@pytest.fixture
async def async_saver(deployment: Any) -> AsyncIterator[AsyncRedisClusterSaver]:
    async with AsyncRedisClusterSaver.from_conn_string(
        deployment.url, **saver_options(deployment)
    ) as saver:
        yield saver
