"""Saver behaviour beyond the conformance suite, on real servers: bad input writes
nothing, hostile ids round-trip, TTL, prune keep_last, copies, serializers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import redis
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from redis_cluster_saver import RedisClusterSaver
from tests.support.servers import keys_under

from .conftest import saver_options

HOSTILE = [
    "",
    "__empty__",
    "{braces}",
    "a}{b",
    "%41%",
    ":|:",
    "parent:1|child:2",
    "nul\x00byte",
    "line\nbreak",
    "\u200frtl",
    "😀",
    "x" * 10_000,
]


def cfg(thread: Any, ns: Any = "", cid: Any = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if cid is not None:
        conf["checkpoint_id"] = cid
    return {"configurable": conf}


def make_checkpoint(values: dict[str, Any], cid: str | None = None) -> Any:
    cp = empty_checkpoint()
    cp["id"] = cid or str(uuid6(clock_seq=-1))
    cp["channel_values"] = values
    cp["channel_versions"] = {k: 1 for k in values}
    return cp


def put_chain(saver: RedisClusterSaver, thread: str, n: int, ns: str = "") -> list[Any]:
    """n checkpoints, each a child of the previous; channel ``grow`` changes every
    step, ``still`` never does (stored once)."""
    configs: list[Any] = []
    parent: str | None = None
    for i in range(n):
        cp = make_checkpoint({"grow": list(range(i)), "still": "same"})
        cp["channel_versions"] = {"grow": i + 1, "still": 1}
        new = {"grow": i + 1, "still": 1} if i == 0 else {"grow": i + 1}
        stored = saver.put(cfg(thread, ns, parent), cp, {"source": "loop", "step": i}, new)
        saver.put_writes(stored, [("grow", i), ("other", {"i": i})], f"task{i}", "path")
        configs.append(stored)
        parent = stored["configurable"]["checkpoint_id"]
    return configs


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda s: s.put({"configurable": {}}, make_checkpoint({}), {}, {}),
            ValueError,
            "thread_id",
        ),
        (lambda s: s.put(cfg(42), make_checkpoint({}), {}, {}), TypeError, "thread_id"),
        (lambda s: s.put(cfg("t", ns=1), make_checkpoint({}), {}, {}), TypeError, "checkpoint_ns"),
        (lambda s: s.put(cfg("t"), make_checkpoint({}, cid=5), {}, {}), TypeError, "checkpoint"),
        (
            lambda s: s.put(cfg("t"), make_checkpoint({}), {"when": object()}, {}),
            ValueError,
            r"metadata\['when'\]",
        ),
        (
            lambda s: s.put(
                cfg("t"), make_checkpoint({"a": 1, "b": object()}), {}, {"a": 1, "b": 1}
            ),
            TypeError,
            "channel 'b'",
        ),
        (
            lambda s: s.put_writes(cfg("t", cid="c"), [("a", 1), ("b", object())], "task"),
            TypeError,
            "write to 'b'",
        ),
        (lambda s: s.put_writes(cfg("t"), [("a", 1)], "task"), ValueError, "checkpoint_id"),
        (lambda s: s.get_tuple(cfg(None)), ValueError, "thread_id"),
        (lambda s: list(s.list(cfg("t"), limit="3")), TypeError, "limit"),
        (lambda s: s.delete_thread(7), TypeError, "thread_id"),
        (lambda s: s.prune(["t"], strategy="half"), ValueError, "strategy"),
    ],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(
    deployment: Any, call: Any, error: type, match: str
) -> None:
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        with pytest.raises(error, match=match):
            call(saver)
        assert keys_under(deployment, options["key_prefix"]) == []


@pytest.mark.parametrize("thread", HOSTILE, ids=lambda t: repr(t)[:20])
def test_hostile_ids_round_trip(sync_saver: RedisClusterSaver, thread: str) -> None:
    saver = sync_saver
    ns = f"parent:{thread}|child:{thread}"
    cid = f"{uuid6(clock_seq=-1)}{thread[:50]}"
    channel = f"ch{thread[:100]}"
    stored = saver.put(cfg(thread, ns), make_checkpoint({channel: thread}, cid), {}, {channel: 1})
    saver.put_writes(stored, [(channel, thread)], f"task{thread}", thread)
    for config in (stored, cfg(thread, ns)):
        tup = saver.get_tuple(config)
        assert tup is not None
        assert tup.config["configurable"] == {
            "thread_id": thread,
            "checkpoint_ns": ns,
            "checkpoint_id": cid,
        }
        assert tup.checkpoint["channel_values"] == {channel: thread}
        assert tup.pending_writes == [(f"task{thread}", channel, thread)]
    every_namespace = {"configurable": {"thread_id": thread}}
    assert [t.checkpoint["id"] for t in saver.list(every_namespace)] == [cid]
    assert saver.get_tuple(cfg(thread + "x", ns)) is None
    assert saver.get_tuple(cfg(thread, ns + "x")) is None


def test_empty_and_sentinel_looking_thread_ids_stay_apart(sync_saver: RedisClusterSaver) -> None:
    for thread in ("", "__empty__"):
        sync_saver.put(cfg(thread), make_checkpoint({"who": thread}), {}, {"who": 1})
    for thread in ("", "__empty__"):
        tup = sync_saver.get_tuple(cfg(thread))
        assert tup is not None and tup.checkpoint["channel_values"] == {"who": thread}


def test_unchanged_channels_are_stored_once(deployment: Any, sync_saver: RedisClusterSaver) -> None:
    put_chain(sync_saver, "once", 20)
    blobs = sync_saver.ops.layout.thread("once").blobs("")
    client = redis.Redis.from_url(deployment.url) if deployment.topology != "cluster" else None
    fields = (client or sync_saver.client).hkeys(blobs)
    assert len([f for f in fields if f.startswith(b"still:")]) == 1
    assert len([f for f in fields if f.startswith(b"grow:")]) == 20
    latest = sync_saver.get_tuple(cfg("once"))
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {"grow": list(range(19)), "still": "same"}


def test_ttl_covers_every_key_of_the_thread_and_refreshes(deployment: Any) -> None:
    options = saver_options(deployment, ttl={"default_ttl": 10, "refresh_on_read": True})
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        put_chain(saver, "ttl", 3)
        put_chain(saver, "ttl", 2, ns="child:1")
        keys = [k for k in keys_under(deployment, options["key_prefix"]) if b":dir:" not in k]
        assert len(keys) >= 13
        client: Any = saver.client
        ttls = [client.pttl(k) for k in keys]
        assert all(540_000 < t <= 600_000 for t in ttls), ttls
        for k in keys:
            client.pexpire(k, 5_000)
        assert saver.get_tuple(cfg("ttl")) is not None  # refresh_on_read
        assert all(client.pttl(k) > 500_000 for k in keys)


def test_prune_keep_last_keeps_the_newest_per_namespace_and_drops_unused_values(
    deployment: Any, sync_saver: RedisClusterSaver
) -> None:
    root = put_chain(sync_saver, "pr", 6)
    child = put_chain(sync_saver, "pr", 4, ns="child:1")
    sync_saver.prune(["pr"], keep_last=2)
    ids = [t.checkpoint["id"] for t in sync_saver.list(cfg("pr", ""))]
    assert ids == [c["configurable"]["checkpoint_id"] for c in reversed(root[-2:])]
    ids = [t.checkpoint["id"] for t in sync_saver.list(cfg("pr", "child:1"))]
    assert ids == [c["configurable"]["checkpoint_id"] for c in reversed(child[-2:])]
    kept = sync_saver.get_tuple(root[-2])
    assert kept is not None
    assert kept.checkpoint["channel_values"] == {"grow": [0, 1, 2, 3], "still": "same"}
    assert [w[2] for w in kept.pending_writes or []] == [4, {"i": 4}]
    fields = sync_saver.client.hkeys(sync_saver.ops.layout.thread("pr").blobs(""))
    assert sorted(fields) == [b"grow:i5", b"grow:i6", b"still:i1"]


def test_copy_thread_copies_the_whole_chain_and_its_writes(sync_saver: RedisClusterSaver) -> None:
    put_chain(sync_saver, "src", 4)
    put_chain(sync_saver, "src", 2, ns="child:1")
    sync_saver.copy_thread("src", "dst")
    for ns in ("", "child:1"):
        src = list(sync_saver.list(cfg("src", ns)))
        dst = list(sync_saver.list(cfg("dst", ns)))
        assert len(src) == len(dst) > 0
        for a, b in zip(src, dst):
            assert b.config["configurable"]["thread_id"] == "dst"
            assert a.checkpoint == b.checkpoint and a.metadata == b.metadata
            assert a.pending_writes == b.pending_writes
            if a.parent_config:
                assert b.parent_config is not None
                assert b.parent_config["configurable"]["thread_id"] == "dst"
    assert "dst" in sync_saver._run(sync_saver.ops.thread_ids)


def test_delete_thread_leaves_no_key_behind(deployment: Any) -> None:
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        put_chain(saver, "gone", 3)
        put_chain(saver, "gone", 2, ns="child:1")
        saver.delete_thread("gone")
        assert keys_under(deployment, options["key_prefix"]) == []


def test_list_filters_are_exact_and_newest_first_across_namespaces(
    sync_saver: RedisClusterSaver,
) -> None:
    md = itertools.cycle(
        [
            {"source": "loop", "step": 1, "tags": {"a": [1, 2]}, "gone": None},
            {"source": "loop", "step": 1.0, "tags": {"a": [2, 1]}},
            {"source": "input", "step": 2},
        ]
    )
    made = []
    for i in range(9):
        ns = ["", "child:1", "child:2"][i % 3]
        cp = make_checkpoint({})
        made.append(sync_saver.put(cfg("f", ns), cp, next(md), {}))
    ids = [c["configurable"]["checkpoint_id"] for c in made]
    every_ns: Any = {"configurable": {"thread_id": "f"}}
    everything = [t.checkpoint["id"] for t in sync_saver.list(every_ns)]
    assert everything == sorted(ids, reverse=True)
    loops = [t.checkpoint["id"] for t in sync_saver.list(every_ns, filter={"step": 1})]
    assert loops == sorted([ids[i] for i in range(9) if i % 3 != 2], reverse=True)
    nested = list(sync_saver.list(every_ns, filter={"tags": {"a": [1, 2]}}))
    assert [t.checkpoint["id"] for t in nested] == sorted(ids[0::3], reverse=True)
    missing_is_none = list(sync_saver.list(every_ns, filter={"gone": None}))
    assert len(missing_is_none) == 9
    assert [t.checkpoint["id"] for t in sync_saver.list(every_ns, before=made[5], limit=2)] == [
        ids[4],
        ids[3],
    ]


class XorCipher:
    """A real (toy) cipher: proves stored bytes are the serializer's own output."""

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        return "xor", bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        assert ciphername == "xor"
        return bytes(b ^ 0x5A for b in ciphertext)


def test_encrypted_serializer_and_allowlist_work(deployment: Any) -> None:
    options = saver_options(deployment, serde=EncryptedSerializer(XorCipher()))
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        stored = saver.put(cfg("enc"), make_checkpoint({"secret": "plain text"}), {}, {"secret": 1})
        tup = saver.get_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"] == {"secret": "plain text"}
        raw = saver.client.hgetall(saver.ops.layout.thread("enc").blobs(""))
        assert raw and all(b"plain text" not in v for v in raw.values())
        clone = saver.with_allowlist([("some.module", "Class")])
        assert clone.ops.serde is clone.serde
        tup = clone.get_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"] == {"secret": "plain text"}


def test_delta_history_matches_the_base_walk(sync_saver: RedisClusterSaver) -> None:
    configs = put_chain(sync_saver, "hist", 5)
    head = configs[-1]
    ours = sync_saver.get_delta_channel_history(config=head, channels=["grow", "other", "nope"])
    base = BaseCheckpointSaver.get_delta_channel_history(
        sync_saver, config=head, channels=["grow", "other", "nope"]
    )
    assert ours == base
    assert ours["grow"]["seed"] == [0, 1, 2]
    assert "seed" not in ours["other"] and len(ours["other"]["writes"]) == 4
