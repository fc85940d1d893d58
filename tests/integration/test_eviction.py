"""Servers that evict the saver's keys: the setup warning, doctor, and threads that lost
some keys, which read back whole or as a clear error, never as a shorter state.

The eviction test runs on a server of its own with a real ``maxmemory`` under
``allkeys-lru``; the others damage one thread by hand (a checkpoint hash, a value, a
delta's base, all values) on the shared servers, in script and per-key mode, sync and
async, on one node and on the cluster.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest
import redis
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from cluster.binaries import available
from cluster.harness import start, stop
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver, detector, errors
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

# a SaverError on code that lacks the class: what it raised there (if anything) is no
# ThreadDamagedError naming the thread, which every check below asks for
DAMAGED: type[Exception] = getattr(errors, "ThreadDamagedError", errors.SaverError)
TURNS = 3
PAD = 400
"""Characters of each message, so that a few hundred threads fill a few megabytes."""


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def chat_graph(checkpointer: Any) -> Any:
    def bot(state: Chat) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(content=f"answer {n} " + "a" * PAD)]}

    g = StateGraph(Chat)
    g.add_node("bot", bot)
    g.add_edge(START, "bot")
    g.add_edge("bot", END)
    return g.compile(checkpointer=checkpointer)


def config(thread: str, run: str = "") -> Any:
    conf: dict[str, Any] = {"configurable": {"thread_id": thread}}
    if run:
        conf["metadata"] = {"run_id": run}
    return conf


def question(i: int) -> dict[str, Any]:
    return {"messages": [HumanMessage(content=f"question {i} " + "q" * PAD)]}


def said(messages: list[Any]) -> list[tuple[str, str]]:
    return [(m.type, m.content) for m in messages]


def expected(turns: int = TURNS) -> list[tuple[str, str]]:
    out = []
    for i in range(turns):
        out += [("human", f"question {i} " + "q" * PAD), ("ai", f"answer {2 * i + 1} " + "a" * PAD)]
    return out


# ---- the policy table, the setup warning and doctor ------------------------------


def test_which_policies_may_evict_the_savers_keys() -> None:
    evictable, Capabilities = detector.evictable, detector.Capabilities
    assert not evictable("noeviction", True)
    for policy in ("allkeys-lru", "allkeys-lfu", "allkeys-random"):
        assert evictable(policy, False) and evictable(policy, True)
    for policy in ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"):
        assert not evictable(policy, False) and evictable(policy, True)
    assert Capabilities().evicts(False) is None  # INFO refused: unknown
    caps = Capabilities(maxmemory_policies=("noeviction", "volatile-lru"))
    assert caps.evicts(False) is False and caps.eviction_problem(False) is None
    problem = caps.eviction_problem(True)
    assert problem is not None and "volatile-lru" in problem and "noeviction" in problem


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]


def doctor(url: str, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "redis_cluster_saver", "doctor", url, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def problems(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip().startswith("problem:")]


@pytest.fixture
def policy(standalone: Any) -> Iterator[redis.Redis]:
    """The shared server's maxmemory-policy, set by the test and put back after."""
    admin = redis.Redis.from_url(standalone.url)
    before = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        yield admin
    finally:
        admin.config_set("maxmemory-policy", before)
        admin.close()


@pytest.mark.parametrize(
    ("setting", "ttl", "warned"),
    [
        ("noeviction", None, False),
        ("noeviction", {"default_ttl": 60}, False),
        ("allkeys-lru", None, True),
        ("allkeys-lfu", {"default_ttl": 60}, True),
        ("volatile-lru", None, False),
        ("volatile-lru", {"default_ttl": 60}, True),
    ],
)
def test_setup_warns_once_where_keys_may_be_evicted_and_doctor_says_so(
    standalone: Any,
    policy: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    setting: str,
    ttl: Any,
    warned: bool,
) -> None:
    policy.config_set("maxmemory-policy", setting)
    options = saver_options(standalone, ttl=ttl)
    with (
        caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
        RedisClusterSaver.from_conn_string(standalone.url, **options) as saver,
    ):
        saver.setup()
        saver.setup()  # setup again: still one warning
        assert saver.capabilities is not None
        assert saver.capabilities.maxmemory_policies == (setting,)
        saver.put(config("w"), _checkpoint(), {}, {})
    logged = _warnings(caplog)
    assert len(logged) == (1 if warned else 0), logged
    if warned:
        assert setting in logged[0] and "maxmemory-policy noeviction" in logged[0]
    extra = ["--ttl", "60"] if ttl else []
    out = doctor(standalone.url, *extra)
    assert _row(out) == setting
    found = problems(out)
    assert len(found) == (1 if warned else 0), out
    if warned:
        assert setting in found[0] and "maxmemory-policy noeviction" in found[0]


def _row(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.strip().startswith("maxmemory-policy "):
            return line.split("maxmemory-policy", 1)[1].strip()
    return ""


def _checkpoint() -> Any:
    from langgraph.checkpoint.base import empty_checkpoint

    return empty_checkpoint()


def test_on_a_cluster_every_primary_is_asked(
    redis_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """One primary of three evicts: the saver finds it whichever node it asks first."""
    primaries = [n for n in redis_cluster.nodes if n.role == "primary"]
    admin = redis.Redis(host=primaries[-1].host, port=primaries[-1].port)
    before = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with (
            caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
            RedisClusterSaver.from_conn_string(
                redis_cluster.url, **saver_options(redis_cluster)
            ) as saver,
        ):
            assert saver.capabilities is not None
            assert saver.capabilities.maxmemory_policies == ("allkeys-lru", before)
        assert len(_warnings(caplog)) == 1
        found = problems(doctor(redis_cluster.url))
        assert len(found) == 1 and "allkeys-lru" in found[0]
    finally:
        admin.config_set("maxmemory-policy", before)
        admin.close()


def test_where_info_is_refused_the_policy_is_unknown(
    proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
        RedisClusterSaver.from_conn_string(proxy.url, **saver_options(proxy)) as saver,
    ):
        assert saver.capabilities is not None
        assert saver.capabilities.maxmemory_policies == ()
        assert saver.capabilities.evicts(False) is None
    assert _warnings(caplog) == []
    out = doctor(proxy.url)
    assert _row(out) == "unknown" and not problems(out)
    assert "maxmemory-policy unknown" in out


# ---- threads damaged by hand ------------------------------------------------------

MODES = {
    "standalone-script": ("standalone", {}),
    "standalone-per-key": ("standalone", {"transactions": False, "scripts": False}),
    "cluster-script": ("cluster", {}),
    "cluster-per-key": ("cluster", {"transactions": False, "scripts": False}),
}
DAMAGE = ["checkpoint", "value", "values", "base"]


def raw_client(dep: Any) -> Any:
    if dep.topology == "cluster":
        node = dep.nodes[0]
        return redis.RedisCluster(host=node.host, port=node.port)
    return redis.Redis.from_url(dep.url)


def damage(client: Any, saver: Any, thread: str, how: str) -> str:
    """Damage the thread's latest checkpoint by hand; its id."""
    keys = saver.ops.layout.thread(thread)
    (cid,) = client.zrevrangebylex(keys.registry(""), "+", "-", start=0, num=1)
    cid = cid.decode()
    cp = keys.checkpoint("", cid)
    names = client.hget(cp, "blobs").split(b"\n")
    (messages,) = [n for n in names if n.startswith(b"messages:")]
    if how == "checkpoint":
        assert client.delete(cp) == 1
    elif how == "value":
        assert client.hdel(keys.blobs(""), messages) == 1
    elif how == "values":
        assert client.delete(keys.blobs("")) == 1
    else:
        frame = client.hget(keys.blobs(""), messages)
        assert frame[:1] == b"+", "the latest messages value is stored as a delta"
        assert client.hdel(keys.blobs(""), frame.split(b"\n")[1]) == 1
    return cid


def _skip_base(how: str, options: dict[str, Any]) -> None:
    if how == "base" and options.get("scripts") is False:
        pytest.skip("list deltas need scripts (per-key mode stores lists whole)")


def assert_names(exc: BaseException, thread: str, cid: str, how: str) -> None:
    text = str(exc)
    assert f"thread {thread!r}" in text, text
    if how == "checkpoint":
        assert cid in text, text


def left_out(caplog: pytest.LogCaptureFixture, thread: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "left out" in r.getMessage() and repr(thread) in r.getMessage()
    ]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("mode", list(MODES))
def test_a_damaged_thread_raises_and_cross_thread_calls_go_on(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, mode: str, how: str
) -> None:
    topology, extra = MODES[mode]
    _skip_base(how, extra)
    dep = deployment_for(request, topology)
    options = saver_options(dep, **extra)
    run = f"run-{uuid.uuid4().hex[:6]}"
    client = raw_client(dep)
    with RedisClusterSaver.from_conn_string(url_of(dep), **options) as saver:
        app = chat_graph(saver)
        for thread in ("hurt", "ok"):
            for i in range(TURNS):
                app.invoke(question(i), config(thread, run if thread == "ok" else ""))
        healthy = [t.checkpoint["id"] for t in saver.list(config("ok"))]
        assert said(app.get_state(config("hurt")).values["messages"]) == expected()
        cid = damage(client, saver, "hurt", how)

        for read in (
            lambda: saver.get_tuple(config("hurt")),
            lambda: list(saver.list(config("hurt"))),
            lambda: app.get_state(config("hurt")),
            lambda: list(app.get_state_history(config("hurt"))),
        ):
            with pytest.raises(DAMAGED) as caught:
                read()
            assert_names(caught.value, "hurt", cid, how)
        exact = {"configurable": {"thread_id": "hurt", "checkpoint_ns": "", "checkpoint_id": cid}}
        with pytest.raises(DAMAGED):
            saver.get_tuple(exact)

        # across threads: the other thread is all there; the damaged one left out
        # with one warning where it shows (the index has dropped a deleted hash, so
        # the index path may not meet the damage at all)
        for search in (None, False):
            with RedisClusterSaver.from_conn_string(
                url_of(dep), **{**options, "search": search}
            ) as across:
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="redis_cluster_saver"):
                    listed = list(across.list(None))
                mine = [t.checkpoint["id"] for t in listed if _thread(t) == "ok"]
                assert mine == healthy
                warned = left_out(caplog, "hurt")
                assert len(warned) <= 1, warned
                if search is False or how != "checkpoint":
                    assert len(warned) == 1, caplog.text
                    assert not [t for t in listed if _thread(t) == "hurt"]
        saver.delete_for_runs([run])
        assert saver.get_tuple(config("ok")) is None

        # a thread that lost every key reads as empty
        saver.delete_thread("hurt")
        assert saver.get_tuple(config("hurt")) is None
    client.close()


def _thread(t: Any) -> str:
    return str(t.config["configurable"]["thread_id"])


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("mode", list(MODES))
async def test_a_damaged_thread_raises_async(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, mode: str, how: str
) -> None:
    topology, extra = MODES[mode]
    _skip_base(how, extra)
    dep = deployment_for(request, topology)
    options = saver_options(dep, **extra)
    client = raw_client(dep)
    async with AsyncRedisClusterSaver.from_conn_string(url_of(dep), **options) as saver:
        app = chat_graph(saver)
        for thread in ("hurt", "ok"):
            for i in range(TURNS):
                await app.ainvoke(question(i), config(thread))
        cid = damage(client, saver, "hurt", how)

        async def history() -> list[Any]:
            return [s async for s in app.aget_state_history(config("hurt"))]

        async def listing() -> list[Any]:
            return [t async for t in saver.alist(config("hurt"))]

        for read in (
            lambda: saver.aget_tuple(config("hurt")),
            listing,
            lambda: app.aget_state(config("hurt")),
            history,
        ):
            with pytest.raises(DAMAGED) as caught:
                await read()
            assert_names(caught.value, "hurt", cid, how)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="redis_cluster_saver"):
            listed = [t async for t in saver.alist(None)]
        assert {_thread(t) for t in listed} >= {"ok"}
        assert len(left_out(caplog, "hurt")) <= 1
        await saver.adelete_thread("hurt")
        assert await saver.aget_tuple(config("hurt")) is None
    client.close()


# ---- real eviction ----------------------------------------------------------------

THREADS = 200
LIMIT = 3 * 1024 * 1024
"""Bytes above what the fresh server holds: a few hundred threads go past it."""


@pytest.fixture(scope="module")
def evicting() -> Iterator[Any]:
    """A standalone server of this module's own under ``maxmemory`` with
    ``allkeys-lru`` (a limit and a policy that would disturb other tests)."""
    reason = available("standalone")
    if reason:
        pytest.skip(f"standalone topology unavailable: {reason}")
    dep = start("standalone")
    admin = redis.Redis.from_url(dep.url)
    try:
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used + LIMIT)
        admin.config_set("maxmemory-policy", "allkeys-lru")
        yield dep
    finally:
        admin.close()
        stop(dep)


def test_threads_under_real_eviction_read_back_whole_or_fail_clearly(
    evicting: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Hundreds of three-turn threads on a server that evicts: each thread, read back
    through LangGraph, holds exactly what its last write produced, or none of it (all
    its keys gone), or raises ThreadDamagedError naming it; never a shorter state.
    The saver warned at setup, once, and doctor reports the policy as a problem."""
    admin = redis.Redis.from_url(evicting.url)
    options = saver_options(evicting)
    last: dict[str, list[tuple[str, str]]] = {}  # what each thread's last write produced
    deadline = time.monotonic() + 240
    with (
        caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
        RedisClusterSaver.from_conn_string(evicting.url, **options) as saver,
    ):
        app = chat_graph(saver)
        for n in range(THREADS):
            thread = f"chat-{n}"
            for i in range(TURNS):
                try:
                    state = app.invoke(question(i), config(thread))
                except DAMAGED:
                    break  # evicted under its writer: LangGraph could not read it back
                last[thread] = said(state["messages"])
            assert time.monotonic() < deadline, "writing took too long"
        # more pressure, from keys of no thread, until a good share of the data went
        evicted = int(admin.info("stats")["evicted_keys"])
        filler = b"f" * 20_000
        for i in range(2000):
            if int(admin.info("stats")["evicted_keys"]) - evicted > 400:
                break
            admin.set(f"filler:{i}", filler)
        assert int(admin.info("stats")["evicted_keys"]) > 0, "nothing was evicted"

        outcome = {"whole": 0, "empty": 0, "damaged": 0}
        shorter = []
        for n in range(THREADS):
            thread = f"chat-{n}"
            try:
                values = app.get_state(config(thread)).values
                history = list(saver.list(config(thread)))
            except DAMAGED as exc:
                assert f"thread {thread!r}" in str(exc), str(exc)
                outcome["damaged"] += 1
                continue
            got = said(values.get("messages", []))
            if not got and not history:
                outcome["empty"] += 1
            elif got == last.get(thread):
                outcome["whole"] += 1
            else:
                shorter.append((thread, len(got), len(last.get(thread, []))))
        assert not shorter, f"read back other than written: {shorter[:10]} ({outcome})"
        logged = _warnings(caplog)
        assert len(logged) == 1 and "allkeys-lru" in logged[0], logged
    found = problems(doctor(evicting.url))
    assert len(found) == 1 and "allkeys-lru" in found[0]
    admin.close()
    print(outcome)


async def test_async_threads_under_real_eviction(evicting: Any) -> None:
    """The same on the async saver, briefly: fewer threads, then more pressure."""
    options = saver_options(evicting)
    last: dict[str, list[tuple[str, str]]] = {}
    admin = redis.Redis.from_url(evicting.url)
    async with AsyncRedisClusterSaver.from_conn_string(evicting.url, **options) as saver:
        app = chat_graph(saver)
        for n in range(60):
            for i in range(TURNS):
                try:
                    state = await app.ainvoke(question(i), config(f"a-{n}"))
                except DAMAGED:
                    break
                last[f"a-{n}"] = said(state["messages"])
        for i in range(100):
            admin.set(f"filler-async:{i}", b"f" * 20_000)
        shorter = []
        for n in range(60):
            try:
                state = await app.aget_state(config(f"a-{n}"))
            except DAMAGED as exc:
                assert f"thread {f'a-{n}'!r}" in str(exc)
                continue
            got = said(state.values.get("messages", []))
            if got not in ([], last.get(f"a-{n}")):
                shorter.append((n, len(got)))
        assert not shorter, shorter
    admin.close()
