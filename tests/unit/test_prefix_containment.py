"""Every key the saver's plans send lives under ``<prefix>:``, whatever the input.

A least-privilege ACL (``~<prefix>:*``, see tests/integration/test_security.py) is only
safe if no thread id, namespace, checkpoint id, task id or channel name can steer a key
out of the prefix. Plans are driven without a server: a small fake answers each call
with replies shaped like the server's (so loops and per-key fallbacks run), and every
key argument of every command, every script's declared keys and every script's thread
handle is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from redis_cluster_saver.detector import PING_SCRIPT, Capabilities
from redis_cluster_saver.keys import KeyLayout, ThreadKeys, blob_field, escape
from redis_cluster_saver.lowering import as_script
from redis_cluster_saver.operations import Operations
from redis_cluster_saver.options import TTL
from redis_cluster_saver.plan import Command, Plan, RoundTrip, ScriptCall, WriteMode

# Where each command the plans may send takes its keys (an unknown command fails the
# test, so a new command has to be classified here before it can ship).
KEYLESS = {"PING", "INFO", "CLUSTER", "FT._LIST", "_FT.SEARCH", "WAIT", "MULTI", "EXEC"}
ALL_ARGS_ARE_KEYS = {"DEL", "EXISTS"}
FIRST_ARG_IS_KEY = {
    "SET", "HSET", "HSETNX", "HGET", "HMGET", "HGETALL", "HKEYS", "HDEL", "HEXISTS",
    "SADD", "SREM", "SMEMBERS", "SCARD", "ZADD", "ZREM", "ZRANGE", "ZRANGEBYLEX",
    "ZREVRANGEBYLEX", "ZCARD", "PEXPIRE", "JSON.TYPE", "FT.CREATE", "FT.INFO", "FT.SEARCH",
}  # fmt: skip
SERDE = JsonPlusSerializer()
CP_TYPE, CP_DATA = SERDE.dumps_typed({k: v for k, v in empty_checkpoint().items() if k != "id"})

# Arbitrary Unicode (Hypothesis leaves out lone surrogates, which the saver rejects
# before any round trip); the prefix may be anything the key layout accepts.
text = st.text(max_size=12)
ids = st.text(min_size=1, max_size=12)  # an empty checkpoint id means "latest"
prefixes = st.text(min_size=1, max_size=8).filter(lambda p: not set(p) & set("{}\n"))
versions = st.one_of(text, st.integers(-(2**40), 2**40), st.floats(allow_nan=False))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FakeServer:
    """Answers calls with replies shaped like a server's, built from the generated ids
    so that loops run once and per-key plans reach their deeper commands."""

    def __init__(self, layout: KeyLayout, thread: str, ns: str, cid: str, channel: str) -> None:
        self.layout, self.thread, self.ns, self.cid = layout, thread, ns, cid
        self.field = blob_field(channel, 1)
        self.keys = layout.thread(thread)
        self.channel = channel

    def checkpoint_hash(self) -> dict[bytes, bytes]:
        return {
            b"type": CP_TYPE.encode(),
            b"checkpoint": CP_DATA,
            b"parent": b"",
            b"v": b"4",
            b"blobs": self.field.encode(),
            b"run_id": b"run",
            b"meta": b"{}",
        }

    def flat(self, mapping: dict[bytes, bytes]) -> list[bytes]:
        return [x for kv in mapping.items() for x in kv]

    def script(self, call: ScriptCall) -> Any:
        name = call.script.name
        if name == "read":
            return [[self.ns.encode(), self.cid.encode()]] if call.args[1] == "ids" else []
        if name == "export":
            cp = self.flat(self.checkpoint_hash())
            entry = [self.cid.encode(), cp, [b"task:0", b"frame"]]
            return [[self.ns.encode(), [self.field.encode(), b"v"], [entry]]]
        if name == "history":
            return []
        return 0 if name in ("delete_thread", "prune", "delete_runs") else 1

    def command(self, args: tuple[Any, ...]) -> Any:
        name, key = str(args[0]).upper(), _s(args[1]) if len(args) > 1 else ""
        if name == "INFO":
            return {"redis_version": "7.0.15", "connected_slaves": 0, "cluster_enabled": 0}
        if name == "CLUSTER":
            return [[0, 16383, [b"127.0.0.1", 7000, b"id"]]]
        if name == "SMEMBERS":
            if key.startswith(f"{self.layout.prefix}:wk:"):  # any thread's writes list
                return [(key.replace(":wk:", ":w:", 1) + ":x:y").encode()]
            member = self.thread if ":dir:" in key else self.ns
            return [member.encode()]
        if name in ("ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZRANGE"):
            return [self.cid.encode()]
        if name == "HGETALL":
            is_cp = key.startswith(f"{self.layout.prefix}:cp:")
            return self.checkpoint_hash() if is_cp else {}
        if name == "HMGET":
            fields = {
                **{k.decode(): v for k, v in self.checkpoint_hash().items()},
                "m:counters_since_delta_snapshot": orjson.dumps({self.channel: 1}),
            }
            return [fields.get(_s(f)) for f in args[2:]]
        if name == "HGET":
            return self.field.encode() if _s(args[2]) == "blobs" else None
        if name == "HKEYS":
            return [self.field.encode(), b"unused:i1"]
        if name == "FT.SEARCH":
            return [1, self.keys.checkpoint(self.ns, self.cid).encode()]
        if name == "FT.INFO":
            return [b"indexing", 0]
        if name in ("SCARD", "HEXISTS"):
            return 0 if name == "SCARD" else 1
        return 1

    def reply(self, call: Command | ScriptCall) -> Any:
        return self.script(call) if isinstance(call, ScriptCall) else self.command(call.args)


def drive(plan: Plan[Any], server: FakeServer) -> list[RoundTrip]:
    """Run ``plan`` to the end against ``server``; returns every trip it sent."""
    sent: list[RoundTrip] = []
    answer: Any = None
    try:
        while True:
            trip = plan.send(answer)
            sent.append(trip)
            answer = [server.reply(c) for c in trip.calls]
            if trip.wait is not None:
                answer.append(trip.wait[0])
    except StopIteration:
        return sent


def command_keys(args: tuple[Any, ...]) -> list[str]:
    name = str(args[0]).upper()
    if name in KEYLESS:
        return []
    if name in ALL_ARGS_ARE_KEYS:
        return [_s(a) for a in args[1:]]
    assert name in FIRST_ARG_IS_KEY, f"classify {name} in KEYLESS / ALL_ARGS / FIRST_ARG"
    keys = [_s(args[1])]
    if name == "FT.CREATE":  # the index covers keys starting with its PREFIX argument
        keys.append(_s(args[list(args).index("PREFIX") + 2]))
    return keys


def apply_keys(call: ScriptCall) -> tuple[list[str], list[str]]:
    """(keys, handles) of the commands an APPLY script carries: (n, command, args...)."""
    keys: list[str] = []
    handles: list[str] = []
    argv, i = call.args, 0
    while i < len(argv):
        n = int(argv[i])
        group = argv[i + 1 : i + 1 + n]
        if group[0] == "__touch__":
            handles.append(_s(group[1]))
        else:
            keys += command_keys(tuple(group))
        i += n + 1
    return keys, handles


def sent_keys(trips: list[RoundTrip]) -> tuple[list[str], list[str]]:
    """Every key and every thread handle the trips carry (including atomic trips as
    the shell sends them where MULTI is refused: one APPLY script)."""
    keys: list[str] = []
    handles: list[str] = []
    for trip in trips:
        for call in trip.calls:
            if isinstance(call, Command):
                keys += command_keys(call.args)
                continue
            keys += call.keys
            if call.script is not PING_SCRIPT:
                handles.append(_s(call.args[0]))
        if trip.atomic and trip.calls:
            applied, _ = as_script(trip)
            keys += applied.keys
            more_keys, more_handles = apply_keys(applied)
            keys += more_keys
            handles += more_handles
    return keys, handles


def operations(
    prefix: str, execution: WriteMode, single_node: bool, search: bool, scripts: bool = True
) -> Operations:
    ops = Operations(KeyLayout(prefix), SERDE, TTL(minutes=1, refresh_on_read=True))
    ops.single_node = single_node
    ops.client_kind = "single" if single_node else "cluster"
    ops.mode.writes = execution
    # scripts run in script mode, never in per-key mode; with MULTI, either way
    ops.mode.scripts = execution is WriteMode.SCRIPT or (
        scripts and execution is WriteMode.TRANSACTION
    )
    ops.capabilities = Capabilities(search=search, search_all_shards=single_node)
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=prefixes,
    thread=text,
    other_thread=text,
    ns=text,
    cid=ids,
    parent=ids,
    task=text,
    task_path=text,
    channels=st.lists(st.tuples(text, versions), min_size=1, max_size=3),
    run=text,
    execution=st.sampled_from(list(WriteMode)),
    single_node=st.booleans(),
    search=st.booleans(),
    scripts=st.booleans(),
)
def test_every_key_starts_with_the_prefix(
    prefix: str,
    thread: str,
    other_thread: str,
    ns: str,
    cid: str,
    parent: str,
    task: str,
    task_path: str,
    channels: list[tuple[str, Any]],
    run: str,
    execution: WriteMode,
    single_node: bool,
    search: bool,
    scripts: bool,
) -> None:
    ops = operations(prefix, execution, single_node, search, scripts)
    server = FakeServer(ops.layout, thread, ns, cid, channels[0][0])
    conf: RunnableConfig = {
        "configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": parent}
    }
    latest: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
    checkpoint = empty_checkpoint()
    checkpoint["id"] = cid
    checkpoint["channel_values"] = {ch: [ch] for ch, _ in channels}
    checkpoint["channel_versions"] = dict(channels)
    metadata: Any = {"source": "loop", "step": 1, "run_id": run, "parents": {ns: parent}}
    writes = [(ch, ch) for ch, _ in channels] + [("__error__", 1)]
    # the detector on an instance of its own: adopting its findings would reset the
    # execution mode and search flag this example asks for
    detecting = operations(prefix, execution, single_node, search, scripts)
    plans: list[Callable[[], Plan[Any]]] = [
        detecting.setup,
        lambda: ops.put(conf, checkpoint, metadata, dict(channels)),
        lambda: ops.put_writes(conf, writes, task, task_path),
        lambda: ops.get_tuple(conf),
        lambda: ops.get_tuple(latest),
        lambda: ops.list_checkpoints(latest, filter={"run_id": run}, limit=3),
        lambda: ops.list_checkpoints(None, filter={"source": "loop", "run_id": run}),
        lambda: ops.delta_channel_history(config=conf, channels=[ch for ch, _ in channels]),
        lambda: ops.copy_thread(thread, other_thread),
        lambda: ops.prune([thread, other_thread], strategy="keep_latest"),
        lambda: ops.prune([thread], strategy="delete"),
        lambda: ops.delete_for_runs([run]),
        lambda: ops.delete_thread(thread),
    ]
    keys: list[str] = []
    handles: list[str] = []
    for make in plans:
        k, h = sent_keys(drive(make(), server))
        keys += k
        handles += h
    assert keys, "the plans sent no keys at all"
    outside = [k for k in keys if not k.startswith(prefix + ":")]
    assert not outside, outside
    assert all(h.split("\n")[0] == prefix for h in handles), handles


@given(prefix=prefixes, thread=text)
def test_thread_handles_split_back_into_the_prefix_and_one_tag(prefix: str, thread: str) -> None:
    """Scripts build keys from ``handle`` as prefix + ':' + kind + tag: the tag can never
    carry a newline (escaped), so the prefix scripts see is the configured one."""
    handle = KeyLayout(prefix).thread(thread).handle
    head, tag = handle.split("\n")
    assert head == prefix
    assert tag == "{t" + escape(thread) + "}"
    keys = ThreadKeys(handle)
    for key in (keys.namespaces, keys.registry(thread), keys.blobs(thread)):
        assert key.startswith(prefix + ":")


def test_fake_server_reaches_the_deeper_per_key_commands() -> None:
    """Guard for the property test: the fake makes per-key plans send what scripts do
    server-side (otherwise the property would check fewer commands than it claims)."""
    ops = operations("p", WriteMode.PER_KEY, True, False)
    server = FakeServer(ops.layout, "t", "", "c", "ch")
    names: set[str] = set()
    for plan in (
        ops.prune(["t"], strategy="keep_latest"),
        ops.delete_for_runs(["run"]),
        ops.copy_thread("t", "u"),
        ops.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}),
    ):
        for trip in drive(plan, server):
            names |= {str(c.args[0]) for c in trip.calls if isinstance(c, Command)}
    assert {"HMGET", "HEXISTS", "HKEYS", "HDEL", "ZREM", "PEXPIRE", "HGETALL"} <= names
