"""pytest plugin that runs LangGraph's own tests on our savers.

Loaded with ``-p langgraph_suite.plugin`` from the folder of LangGraph's sdist (see
``__main__``). It

- adds params to LangGraph's ``sync_checkpointer`` fixture (``rcs_standalone``,
  ``rcs_cluster``: :class:`RedisClusterSaver`) and ``async_checkpointer`` fixture
  (``rcs_standalone_aio``, ``rcs_cluster_aio``: :class:`AsyncRedisClusterSaver`);
- parametrizes the tests that build ``InMemorySaver()`` themselves (the delta-channel
  files, a few in test_pregel) with ``rcs_direct``: ``memory`` leaves them as they
  are, ``rcs_standalone`` / ``rcs_cluster`` make that name build a
  :class:`BothStyles` instead (our sync saver, whose ``a*`` methods call the sync
  ones as InMemorySaver's do: those tests use both styles), also as a base class;
- starts a standalone server and a cluster once per run with the harness (in the
  xdist controller, which stops them at the end), and gives every saver a key
  prefix of its own from a counter (some tests patch ``uuid.uuid4``);
- with ``--savers ours`` (the default) keeps only the tests on our savers, with
  ``memory`` only those on InMemorySaver, with ``all`` everything.

:data:`EXCLUDED` lists the tests that cannot pass on any saver but InMemorySaver
(they read its internals), each with its reason; they are skipped on ours.
"""

from __future__ import annotations

import itertools
import json
import os
import types
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.serde.base import SerializerProtocol

from cluster.harness import available, start, stop
from cluster.model import Deployment, load_state
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

TOPOLOGIES = {"rcs_standalone": "standalone", "rcs_cluster": "cluster"}
SYNC_PARAMS = list(TOPOLOGIES)
ASYNC_PARAMS = [f"{p}_aio" for p in TOPOLOGIES]
DIRECT = "rcs_direct"
DIRECT_PARAMS = ["memory", *TOPOLOGIES]
CHECKPOINTER_FIXTURES = ("sync_checkpointer", "async_checkpointer")
ENV = "RCS_LANGGRAPH_DEPLOYMENTS"

EXCLUDED: dict[str, str] = {}
WALL_CLOCK: frozenset[str] = frozenset(
    {
        "test_pregel_async.py::test_stream_buffering_single_node",
        "test_pregel_async.py::test_stream_subgraphs_during_execution",
    }
)
"""Tests that assert when stream events arrive to a tenth of a second: on a busy 2-core
machine they miss now and then on any saver, ours or InMemorySaver. They are run up
to three times (pytest-rerunfailures); a saver that breaks them fails all three."""
"""``file::test`` -> why it cannot pass on a saver other than InMemorySaver."""

_prefixes = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--savers",
        choices=("ours", "memory", "all"),
        default="ours",
        help="run the tests on our savers (default), on InMemorySaver only, or all",
    )


# ---- servers ----------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("savers") == "memory" or hasattr(config, "workerinput"):
        return  # no servers needed, or an xdist worker: the controller started them
    started: dict[str, Deployment] = {}
    try:
        for topology in TOPOLOGIES.values():
            reason = available(topology)
            if reason:
                raise pytest.UsageError(f"the {topology} topology is unavailable: {reason}")
            started[topology] = start(topology, owner_pid=os.getpid())
    except BaseException:
        for dep in started.values():
            stop(dep)
        raise
    config.stash[_started] = started
    os.environ[ENV] = json.dumps({t: d.workdir for t, d in started.items()})


def pytest_unconfigure(config: pytest.Config) -> None:
    for dep in config.stash.get(_started, {}).values():
        stop(dep)


_started = pytest.StashKey[dict[str, Deployment]]()
_deployments: dict[str, Deployment] = {}


def deployment(param: str) -> Deployment:
    topology = TOPOLOGIES[param.removesuffix("_aio")]
    if not _deployments:
        for name, workdir in json.loads(os.environ[ENV]).items():
            dep = load_state(Path(workdir))
            assert dep is not None, f"no running {name} deployment in {workdir}"
            _deployments[name] = dep
    return _deployments[topology]


def options(param: str, serde: SerializerProtocol | None = None) -> dict[str, Any]:
    """A fresh key prefix per saver, from a counter (tests patch uuid4)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    found: dict[str, Any] = {"key_prefix": f"lg-{worker}-{next(_prefixes)}"}
    dep = deployment(param)
    if dep.client_kwargs:
        found["connection_args"] = dict(dep.client_kwargs)
    if serde is not None:
        found["serde"] = serde
    return found


@contextmanager
def sync_saver(param: str) -> Iterator[RedisClusterSaver]:
    with RedisClusterSaver.from_conn_string(deployment(param).url, **options(param)) as saver:
        yield saver


@asynccontextmanager
async def async_saver(param: str) -> AsyncIterator[AsyncRedisClusterSaver]:
    async with AsyncRedisClusterSaver.from_conn_string(
        deployment(param).url, **options(param)
    ) as saver:
        yield saver


# ---- LangGraph's checkpointer fixtures, with our params added -----------------------


@pytest.hookimpl(tryfirst=True)
def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """LangGraph's tests/conftest.py, as it registers (before pytest reads its
    fixtures): its checkpointer fixtures get our params."""
    module = plugin if isinstance(plugin, types.ModuleType) else None
    if module is None or not (module.__file__ or "").endswith(os.path.join("tests", "conftest.py")):
        return
    for name, ours, sync in (
        ("sync_checkpointer", SYNC_PARAMS, True),
        ("async_checkpointer", ASYNC_PARAMS, False),
    ):
        if hasattr(module, name):
            setattr(module, name, _extended(getattr(module, name), ours, sync=sync))


def _extended(original: Any, ours: list[str], *, sync: bool) -> Any:
    marker = getattr(original, "_fixture_function_marker", None)
    function = getattr(original, "__wrapped__", None)
    if marker is None or function is None:
        raise pytest.UsageError(
            f"cannot extend LangGraph's {original!r}: this pytest keeps fixtures "
            "differently (pytest 8.4 or newer is needed)"
        )
    params = [*(marker.params or ()), *ours]
    if sync:

        def fixture(request: pytest.FixtureRequest) -> Iterator[Any]:
            if request.param in ours:
                with sync_saver(request.param) as saver:
                    yield saver
            else:
                yield from function(request)

    else:

        async def fixture(request: pytest.FixtureRequest) -> AsyncIterator[Any]:  # type: ignore[misc]
            if request.param in ours:
                async with async_saver(request.param) as saver:
                    yield saver
            else:
                async for saver in function(request):
                    yield saver

    fixture.__name__ = fixture.__qualname__ = marker.name or function.__name__
    fixture.__module__ = function.__module__
    return pytest.fixture(scope=marker.scope, params=params, ids=marker.ids)(fixture)


# ---- tests that build InMemorySaver() themselves --------------------------------------


class BothStyles(RedisClusterSaver):
    """Our sync saver, whose ``a*`` methods call its sync ones, as InMemorySaver's
    do (which these tests build, and use from sync and async graphs alike).
    AsyncRedisClusterSaver is what the ``async_checkpointer`` params run."""

    def __init__(self, url: str, **opts: Any) -> None:
        super().__init__(url, **opts)
        self.setup()  # as from_conn_string does (tests time their first steps)

    async def aget_tuple(self, config: Any) -> Any:
        return self.get_tuple(config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for item in self.list(config, **kwargs):
            yield item

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        return self.put(*args, **kwargs)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        self.put_writes(*args, **kwargs)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Any) -> None:
        self.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Any, **kwargs: Any) -> None:
        self.prune(thread_ids, **kwargs)

    async def aget_delta_channel_history(self, **kwargs: Any) -> Any:
        return self.get_delta_channel_history(**kwargs)


def builds_in_memory_saver(function: Callable[..., Any]) -> bool:
    """Whether the test calls ``InMemorySaver`` (itself, in a nested function, or in a
    function of its module that it calls)."""
    module = getattr(function, "__globals__", {})
    seen: set[types.CodeType] = set()

    def walk(code: types.CodeType) -> bool:
        if code in seen:
            return False
        seen.add(code)
        if "InMemorySaver" in code.co_names:
            return True
        nested = (c for c in code.co_consts if isinstance(c, types.CodeType))
        called = (
            module[name].__code__
            for name in code.co_names
            if isinstance(module.get(name), types.FunctionType)
            and module[name].__module__ == module.get("__name__")
        )
        return any(walk(c) for c in itertools.chain(nested, called))

    code = getattr(function, "__code__", None)
    return code is not None and walk(code)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if any(name in metafunc.fixturenames for name in CHECKPOINTER_FIXTURES):
        return
    if DIRECT in metafunc.fixturenames and builds_in_memory_saver(metafunc.function):
        metafunc.parametrize(DIRECT, DIRECT_PARAMS, indirect=True)


@pytest.fixture(autouse=True)
def rcs_direct(request: pytest.FixtureRequest) -> Iterator[None]:
    """With one of our params: ``InMemorySaver`` in the test's module builds ours."""
    found = getattr(request, "param", None)
    if found is None or found == "memory":
        yield
        return
    param = str(found)
    made: list[BothStyles] = []

    class InMemorySaver(BothStyles):
        """Stands in for LangGraph's, also as a base class (tests subclass it)."""

        def __init__(self, *, serde: SerializerProtocol | None = None) -> None:
            super().__init__(deployment(param).url, **options(param, serde))
            made.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(request.module, "InMemorySaver", InMemorySaver)
        yield
    for saver in made:
        saver.close()


# ---- which tests run ------------------------------------------------------------------


def saver_of(item: pytest.Item) -> str | None:
    """The saver param of a test (ours start with ``rcs_``), if it has one."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    for name in (*CHECKPOINTER_FIXTURES, DIRECT):
        if name in params:
            return str(params[name])
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("savers")
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        saver = saver_of(item)
        ours = saver is not None and saver.startswith("rcs_")
        keep = wanted == "all" or (ours if wanted == "ours" else saver == "memory")
        (kept if keep else dropped).append(item)
        name = item.nodeid.split("[")[0].removeprefix("tests/")
        if name in WALL_CLOCK and config.pluginmanager.hasplugin("rerunfailures"):
            item.add_marker(pytest.mark.flaky(reruns=2))
        reason = EXCLUDED.get(name)
        if ours and reason:
            item.add_marker(pytest.mark.skip(reason=f"InMemorySaver only: {reason}"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
