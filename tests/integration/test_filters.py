"""Metadata filters give InMemorySaver's answer on every path.

InMemorySaver keeps a checkpoint when ``filter_value == metadata.get(key)`` for every
filter item: Python's equality, so ``True == 1 == 1.0``, ``2.0 == 2``, dicts compare
without key order, ``"1" != 1``, and ``None`` matches a missing key. The same data
and filters go through one thread's read script, the thread directory (search
off, and proxies), the search index (one, or one per primary on a cluster), the
per-key plans (no MULTI, no Lua), and the async saver; all must agree with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.plan import WriteMode

from .conftest import deployment_for, saver_options

MISSING = object()
"""No such key in the checkpoint's metadata."""

V = [
    *(True, False, 1, 0, 1.0, 0.0, -0.0, 2, 2.0, 2.5, -1, None, MISSING),
    *("1", "true", "null", "", 2**60, float(2**60), 2**60 + 1, 1e300, 2**63),
    *([1, 2], [1.0, True], [True, 2], [], {}, [None], ["1"]),
    {"a": 1, "b": [1, 2]},
    {"b": [1.0, 2], "a": True},
    {"a": 1.5},
    {"a": {"c": None}},
    {"a": {}},
    [1, {"c": 0}],
    [True, {"c": False}],
]
FLAG = [True, 1, False, 0, 1.0, None, MISSING, "1", 0.0]
STEP = [True, 1, 1.0, 2, 2.0, 2.5, False, 0, MISSING, None, -1, 3, 1e300, 2**60, float(2**60)]
SOURCE = ["loop", "input", True, 1, None, MISSING]
NESTED = [{"x": 1, "y": [1, 2]}, {"y": [1.0, 2], "x": True}, {"x": 2}, [1, {"c": None}], []]
RUNS = ["run-a", "run-b"]
ROWS: list[tuple[str, str, str, dict[str, Any]]] = []
"""(thread, namespace, checkpoint id, metadata), put in this order."""
for i, v in enumerate(V):
    md = {
        "v": v,
        "flag": FLAG[i % len(FLAG)],
        "step": STEP[i % len(STEP)],
        "source": SOURCE[i % len(SOURCE)],
        "nested": NESTED[i % len(NESTED)],
        "run_id": RUNS[i % 2],
    }
    thread, ns = f"t{i % 2}", "child" if i % 3 == 2 else ""
    ROWS.append((thread, ns, f"{i:04d}", {k: x for k, x in md.items() if x is not MISSING}))

FILTERS: list[dict[str, Any]] = [
    {},
    *({"v": x} for x in V if x is not MISSING),
    *({"v": x} for x in ("2", 3, 1e-300, (1, 2), [2, 1], {"a": 1}, {"a": 1, "b": [2, 1]})),
    *({"flag": x} for x in [*FLAG, 2, "True"] if x is not MISSING),
    *({"step": x} for x in [*STEP, 4, 2.000001, "1"] if x is not MISSING),
    *({"source": x} for x in [*SOURCE, "Loop", 1.0] if x is not MISSING),
    *({"nested": x} for x in [*NESTED, {"x": 1}, {"x": 1.0, "y": [True, 2.0]}]),
    {"absent": None},
    {"absent": 0},
    {"absent": False},
    {"flag": 1, "step": 1},
    {"flag": True, "step": True},
    {"flag": 1.0, "source": "loop"},
    {"run_id": "run-a", "step": True},
    {"run_id": "run-b", "v": 1, "absent": None},
]

# (topology, saver options): each path a list takes
PATHS: dict[str, tuple[str, dict[str, Any]]] = {
    "standalone index": ("standalone", {}),
    "standalone directory": ("standalone", {"search": False}),
    "cluster fan-out": ("cluster", {}),
    "cluster directory": ("cluster", {"search": False}),
    "proxy directory": ("proxy", {}),
    "per-key index": ("standalone", {"transactions": False, "scripts": False}),
    "per-key directory": ("standalone", {"transactions": False, "scripts": False, "search": False}),
}


def make_checkpoint(cid: str) -> Any:
    cp = empty_checkpoint()
    cp["id"] = cid
    cp["ts"] = "2024-07-01T00:00:00+00:00"
    cp["channel_values"] = {"v": cid}
    cp["channel_versions"] = {"v": 1}
    return cp


def put_args(row: tuple[str, str, str, dict[str, Any]]) -> tuple[Any, ...]:
    thread, ns, cid, md = row
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
    return config, make_checkpoint(cid), md, {"v": 1}


def where(tuples: Iterable[CheckpointTuple]) -> list[tuple[str, str, str]]:
    out = []
    for t in tuples:
        c = t.config["configurable"]
        out.append((c["thread_id"], c["checkpoint_ns"], c["checkpoint_id"]))
    return out


def typed(value: Any) -> Any:
    """A value with the type of every leaf spelled out: ``True`` is not ``1`` here."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


def queries(
    threads: Iterable[str], filters: Iterable[dict[str, Any]]
) -> list[tuple[RunnableConfig | None, dict[str, Any], int | None]]:
    """(config, filter, limit) of every list compared: each thread (all namespaces),
    each thread's root namespace with a limit (the order is then the same as
    InMemorySaver's), and across threads."""
    out: list[tuple[RunnableConfig | None, dict[str, Any], int | None]] = []
    for f in filters:
        for t in threads:
            out.append(({"configurable": {"thread_id": t}}, f, None))
            out.append(({"configurable": {"thread_id": t, "checkpoint_ns": ""}}, f, 2))
        out.append((None, f, None))
    return out


def expected(mem: InMemorySaver, config: Any, f: dict[str, Any], limit: int | None) -> Any:
    found = where(mem.list(config, filter=f, limit=limit))
    return found if limit else sorted(found)


def check_path(saver: RedisClusterSaver, name: str) -> None:
    options = PATHS[name][1]
    caps = saver.capabilities
    assert caps is not None
    assert bool(caps.search and options.get("search", True)) == ("index" in name or "fan" in name)
    if options.get("scripts") is False:
        assert saver.ops.write_mode is WriteMode.PER_KEY


@pytest.mark.parametrize("name", list(PATHS))
def test_true_and_one_filter_alike(request: pytest.FixtureRequest, name: str) -> None:
    """The reported case: ``{"flag": True}`` found by ``{"flag": 1}``, ``step`` 1
    found by ``True``, in one thread and across threads."""
    topology, options = PATHS[name]
    deployment = deployment_for(request, topology)
    with RedisClusterSaver.from_conn_string(
        deployment.url, **saver_options(deployment, **options)
    ) as saver:
        saver.put(*put_args(("t", "", "0001", {"flag": True, "step": 1})))
        saver.put(*put_args(("t", "", "0002", {"flag": False, "step": 2})))
        configs: list[Any] = [{"configurable": {"thread_id": "t"}}, None]
        for config in configs:
            for f in ({"flag": 1}, {"flag": 1.0}, {"step": True}, {"flag": True, "step": 1.0}):
                assert [t.checkpoint["id"] for t in saver.list(config, filter=f)] == ["0001"], (
                    config,
                    f,
                )


@pytest.mark.parametrize("name", list(PATHS))
def test_filters_match_in_memory_saver(request: pytest.FixtureRequest, name: str) -> None:
    topology, options = PATHS[name]
    deployment = deployment_for(request, topology)
    mem = InMemorySaver()
    with RedisClusterSaver.from_conn_string(
        deployment.url, **saver_options(deployment, **options)
    ) as saver:
        check_path(saver, name)
        for row in ROWS:
            saver.put(*put_args(row))
            mem.put(*put_args(row))
        mismatches = []
        for config, f, limit in queries(["t0", "t1"], FILTERS):
            want = expected(mem, config, f, limit)
            found = where(saver.list(config, filter=f, limit=limit))
            got = found if limit else sorted(found)
            if got != want:
                mismatches.append((config, f, limit, got, want))
        assert not mismatches, "\n".join(map(repr, mismatches[:20]))
        # metadata comes back as it was put, every type kept (True is not 1)
        for thread, ns, cid, _ in ROWS:
            config = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
            config["configurable"]["checkpoint_id"] = cid
            ours, theirs = saver.get_tuple(config), mem.get_tuple(config)  # type: ignore[arg-type]
            assert ours is not None and theirs is not None
            assert typed(ours.metadata) == typed(theirs.metadata), cid
        # deleting runs reads run_id on its own field: unaffected by filters
        # (InMemorySaver has no delete_for_runs: the survivors are computed here)
        saver.delete_for_runs(["run-a"])
        left = [r for r in ROWS if r[3]["run_id"] != "run-a"]
        for f in ({}, {"flag": 1}, {"step": True}):
            want = sorted(r[:3] for r in left if all(v == r[3].get(k) for k, v in f.items()))
            assert sorted(where(saver.list(None, filter=f))) == want, f


ASYNC_PATHS = ["standalone index", "cluster directory", "per-key directory"]


@pytest.mark.parametrize("name", ASYNC_PATHS)
async def test_async_filters_match_in_memory_saver(
    request: pytest.FixtureRequest, name: str
) -> None:
    topology, options = PATHS[name]
    deployment = deployment_for(request, topology)
    mem = InMemorySaver()
    async with AsyncRedisClusterSaver.from_conn_string(
        deployment.url, **saver_options(deployment, **options)
    ) as saver:
        for row in ROWS:
            await saver.aput(*put_args(row))
            mem.put(*put_args(row))
        mismatches = []
        for config, f, limit in queries(["t0", "t1"], FILTERS):
            want = expected(mem, config, f, limit)
            found = where([t async for t in saver.alist(config, filter=f, limit=limit)])
            got = found if limit else sorted(found)
            if got != want:
                mismatches.append((config, f, limit, got, want))
        assert not mismatches, "\n".join(map(repr, mismatches[:20]))


# ---- generated: values drawn to collide under Python's equality ----------------

SCALARS = st.sampled_from(
    [None, True, False, 0, 1, 2, -0.0, 0.0, 1.0, 2.0, 0.5, 2**60, float(2**60), "1", "", "a"]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from("ab"), inner),
    max_leaves=4,
)
KEYS = st.sampled_from(["step", "flag", "source", "k"])
METADATA = st.dictionaries(KEYS, VALUES, max_size=3)


def twin(value: Any) -> Any:
    """An equal value of other types: bools as ints, ints as floats, integral floats
    as ints, dict keys reversed."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return float(value) if abs(value) < 2**53 else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [twin(v) for v in value]
    if isinstance(value, dict):
        return {k: twin(value[k]) for k in reversed(value)}
    return value


@pytest.mark.parametrize("options", [{}, {"search": False}], ids=["index", "directory"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    metadata=st.lists(METADATA, min_size=1, max_size=5),
    filters=st.lists(st.dictionaries(KEYS, VALUES, min_size=1, max_size=2), max_size=4),
)
def test_generated_filters_match_in_memory_saver(
    standalone: Any,
    options: dict[str, Any],
    metadata: list[dict[str, Any]],
    filters: list[dict[str, Any]],
) -> None:
    rows = [(f"t{i % 2}", "", f"{i:04d}", md) for i, md in enumerate(metadata)]
    # and filters taken from what is stored, as is and as an equal twin of other
    # types, so that some of them match
    taken = [(k, v) for md in metadata[:3] for k, v in list(md.items())[:1]]
    filters += [{k: x} for k, v in taken for x in (v, twin(v))]
    mem = InMemorySaver()
    with RedisClusterSaver.from_conn_string(
        standalone.url, **saver_options(standalone, **options)
    ) as saver:
        for row in rows:
            saver.put(*put_args(row))
            mem.put(*put_args(row))
        for config, f, limit in queries(["t0", "t1"], filters):
            found = where(saver.list(config, filter=f, limit=limit))
            assert (found if limit else sorted(found)) == expected(mem, config, f, limit), (
                config,
                f,
            )
