"""Moving threads from any LangGraph saver into this one.

The source is read through its own public API (``list``, with ``pending_writes``
from the tuples it returns), so its storage is interpreted by the code that wrote
it; any ``BaseCheckpointSaver`` works. Two things the tuple API does not give are
looked up where the source keeps them: which threads exist on the AWS
``ValkeySaver`` (its ``list(None)`` yields nothing, so its thread keys are walked
with ``SCAN``), and the task paths of pending writes in PostgreSQL and SQLite
(their writes tables; other sources have none, and their writes are put with an
empty path). Re-running is safe: a checkpoint already here is not put again, and
its pending writes are put again idempotently (ordinary writes never overwrite),
so an interrupted run completes.

``source_saver(url)`` opens the saver a URL names: ``postgresql://`` (PostgresSaver),
``sqlite:///path`` (SqliteSaver), ``valkey://``/``valkeys://`` (the AWS
ValkeySaver) and ``redis://``/``rediss://`` (langgraph-checkpoint-redis).
"""

from __future__ import annotations

import contextlib
import heapq
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from .saver import RedisClusterSaver

Progress = Callable[..., Iterable[str]]
"""Wraps the list of thread ids, called as ``progress(ids, total=n)``: ``tqdm`` itself."""


class MigrationSourceError(ValueError):
    """A source URL that cannot be opened: unknown scheme, missing package, no data."""


@dataclass
class MigrationReport:
    threads: int = 0
    namespaces: int = 0
    migrated: int = 0
    already_there: int = 0
    writes: int = 0
    differences: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sources


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _need(package: str, scheme: str, exc: ImportError) -> MigrationSourceError:
    return MigrationSourceError(
        f"reading {scheme} sources needs {package}: pip install {package} ({exc})"
    )


@contextlib.contextmanager
def source_saver(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    """The LangGraph saver whose data ``url`` names, opened for reading.

    Nothing is created at the source: PostgreSQL is opened with read-only
    transactions and without ``setup()``, SQLite read-only (the file must exist).
    Raises ``MigrationSourceError`` for an unknown scheme or a missing package.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        with _postgres(url) as saver:
            yield saver
    elif scheme == "sqlite":
        with _sqlite(url) as saver:
            yield saver
    elif scheme in ("valkey", "valkeys"):
        with _valkey(url) as saver:
            yield saver
    elif scheme in ("redis", "rediss"):
        try:
            from langgraph.checkpoint.redis import RedisSaver
        except ImportError as exc:
            raise _need("langgraph-checkpoint-redis", "redis://", exc) from exc
        saver = RedisSaver(url)
        saver.setup()  # its search indexes, which its reads query
        try:
            yield saver
        finally:
            with contextlib.suppress(Exception):
                saver._redis.close()
    else:
        raise MigrationSourceError(
            f"unknown source scheme {scheme + '://' if scheme else url!r}: use postgresql://, "
            "sqlite:///path, valkey://, valkeys://, redis:// or rediss://"
        )


def reference_saver(url: str) -> BaseCheckpointSaver[Any]:
    """The older saver (langgraph-checkpoint-redis) on ``url``, left open."""
    try:
        from langgraph.checkpoint.redis import RedisSaver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _need("langgraph-checkpoint-redis", "redis://", exc) from exc
    saver = RedisSaver(url)
    saver.setup()
    return saver


@contextlib.contextmanager
def _postgres(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError as exc:
        raise _need("langgraph-checkpoint-postgres", "postgresql://", exc) from exc
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    conn = psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    try:
        conn.execute("SET default_transaction_read_only = on")
        found = conn.execute("SELECT to_regclass('checkpoints') AS t").fetchone()
        if not found or found["t"] is None:
            raise MigrationSourceError(f"no LangGraph checkpoints table at {redact(url)}")
        yield PostgresSaver(conn)
    finally:
        conn.close()


@contextlib.contextmanager
def _sqlite(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    try:
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError as exc:
        raise _need("langgraph-checkpoint-sqlite", "sqlite://", exc) from exc
    # sqlite:////abs/x.db is absolute (SQLAlchemy's spelling), sqlite:///x.db relative
    # to the working directory, or absolute when no such relative file exists
    rest = url[len("sqlite://") :]
    if rest.startswith("//"):
        candidates = [rest[1:]]
    elif rest.startswith("/"):
        candidates = [rest[1:], rest]
    else:
        candidates = [rest]
    found = next((p for p in candidates if p and os.path.isfile(p)), None)
    if found is None:
        raise MigrationSourceError(f"no SQLite file at {url!r} (tried {', '.join(candidates)})")
    uri = Path(found).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "checkpoints" not in tables or "writes" not in tables:
            raise MigrationSourceError(f"no LangGraph checkpoints table in {found}")
        saver = SqliteSaver(conn)
        # its setup() (run on first use) writes: PRAGMA journal_mode=WAL, CREATE TABLE
        columns = {r[1] for r in conn.execute("PRAGMA table_info(writes)")}
        saver._has_task_path = "task_path" in columns
        saver.is_setup = True
        yield saver
    finally:
        conn.close()


@contextlib.contextmanager
def _valkey(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    try:
        from langgraph_checkpoint_aws.checkpoint.valkey import ValkeySaver
        from valkey import Valkey
    except ImportError as exc:
        raise _need("'langgraph-checkpoint-aws[valkey]'", "valkey://", exc) from exc
    client = Valkey.from_url(url)
    try:
        yield ValkeySaver(client)
    finally:
        client.close()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- reading


def _kind(source: BaseCheckpointSaver[Any]) -> str:
    return f"{type(source).__module__}.{type(source).__name__}"


def _valkey_threads(source: Any) -> dict[str, set[str]]:
    """ValkeySaver keeps ``thread:{<thread id>}:<namespace>`` lists of checkpoint ids;
    the thread id is read back from a checkpoint's JSON, since the key alone is
    ambiguous when a thread id holds ``}:``."""
    import orjson

    found: dict[str, set[str]] = defaultdict(set)
    client = source.client
    for raw in client.scan_iter(match="thread:{*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        newest = client.lrange(key, 0, 0)
        if not newest:
            continue
        cid = newest[0].decode()
        tail = key[len("thread:{") :]
        starts = [i for i in range(len(tail)) if tail.startswith("}:", i)]
        for i in starts:
            thread, ns = tail[:i], tail[i + 2 :]
            doc = client.get(f"checkpoint:{{{thread}}}:{ns}:{cid}")
            if doc and orjson.loads(doc).get("thread_id") == thread:
                found[thread].add(ns)
                break
    return found


def thread_namespaces(source: BaseCheckpointSaver[Any]) -> dict[str, set[str]]:
    """Every thread of ``source`` with the checkpoint namespaces it has."""
    if _kind(source).endswith("ValkeySaver"):
        return _valkey_threads(source)
    found: dict[str, set[str]] = defaultdict(set)
    for t in source.list(None):
        conf = t.config["configurable"]
        found[conf["thread_id"]].add(conf.get("checkpoint_ns", ""))
    return found


def _cfg(thread: str, ns: str, checkpoint_id: str | None = None) -> Any:
    conf = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _thread_tuples(
    source: BaseCheckpointSaver[Any], thread: str, namespaces: Iterable[str]
) -> list[CheckpointTuple]:
    """Every checkpoint of one thread, each once and each as ``get_tuple`` by id reads
    it: ``list`` finds them (some savers' ``list`` with ``checkpoint_ns=""`` also
    returns the subgraphs' checkpoints), but a saver's ``list`` may return less than
    its ``get_tuple`` (langgraph-checkpoint-redis 0.5 lists ``Send`` packets as plain
    dicts)."""
    seen: dict[tuple[str, str], CheckpointTuple] = {}
    for ns in sorted(namespaces):
        # listed in full before reading by id: SqliteSaver holds its lock while its
        # list() generator runs, and get_tuple takes the same lock
        for t in list(source.list(_cfg(thread, ns))):
            conf = t.config["configurable"]
            if conf.get("checkpoint_ns", "") == ns and (ns, conf["checkpoint_id"]) not in seen:
                exact = source.get_tuple(_cfg(thread, ns, conf["checkpoint_id"]))
                seen[(ns, conf["checkpoint_id"])] = exact or t
    return list(seen.values())


def _task_paths(source: BaseCheckpointSaver[Any], thread: str) -> dict[tuple[str, str, str], str]:
    """(namespace, checkpoint id, task id) -> task path, where the source stores paths."""
    kind = _kind(source)
    rows: Iterable[Any] = []
    try:
        if kind.startswith("langgraph.checkpoint.postgres"):
            conn: Any = source.conn  # type: ignore[attr-defined]
            pooled = hasattr(conn, "getconn")  # a psycopg_pool.ConnectionPool
            with conn.connection() if pooled else contextlib.nullcontext(conn) as c:
                cur = c.execute(
                    "SELECT checkpoint_ns, checkpoint_id, task_id, task_path "
                    "FROM checkpoint_writes WHERE thread_id = %s",
                    (thread,),
                )
                rows = [tuple(r.values()) if isinstance(r, Mapping) else r for r in cur]
        elif kind.startswith("langgraph.checkpoint.sqlite"):
            rows = source.conn.execute(  # type: ignore[attr-defined]
                "SELECT checkpoint_ns, checkpoint_id, task_id, task_path FROM writes "
                "WHERE thread_id = ?",
                (thread,),
            ).fetchall()
    except Exception:  # an older schema without task_path: paths stay empty
        return {}
    return {(r[0], r[1], r[2]): r[3] or "" for r in rows}


def _in_order(tuples: list[CheckpointTuple]) -> list[CheckpointTuple]:
    """Oldest first, and never a checkpoint before its parent (a fork made later from
    an older checkpoint, or ids from skewed clocks, still come after their parents)."""

    def key(t: CheckpointTuple) -> tuple[str, str]:
        conf = t.config["configurable"]
        return conf.get("checkpoint_ns", ""), conf["checkpoint_id"]

    def parent(t: CheckpointTuple) -> tuple[str, str] | None:
        if not t.parent_config:
            return None
        conf = t.parent_config["configurable"]
        return conf.get("checkpoint_ns", key(t)[0]), conf["checkpoint_id"]

    by_key = {key(t): t for t in tuples}
    children: dict[tuple[str, str], list[CheckpointTuple]] = defaultdict(list)
    heap: list[tuple[str, str, str]] = []
    for t in tuples:
        p = parent(t)
        if p is not None and p in by_key and p != key(t):
            children[p].append(t)
        else:
            ns, cid = key(t)
            heapq.heappush(heap, (cid, ns, cid))
    ordered = []
    while heap:
        _, ns, cid = heapq.heappop(heap)
        ordered.append(by_key[(ns, cid)])
        for child in children.pop((ns, cid), []):
            c_ns, c_id = key(child)
            heapq.heappush(heap, (c_id, c_ns, c_id))
    ordered += [t for kids in children.values() for t in kids]  # cycles: never in practice
    return ordered


# --------------------------------------------------------------------------- migrating


def migrate(
    source: BaseCheckpointSaver[Any],
    target: RedisClusterSaver,
    *,
    threads: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy every thread of ``source`` (or only ``threads``) into ``target``.

    Every namespace (subgraphs), every checkpoint with its metadata and parent link,
    parents before children, each with all its channel values (the checkpoint's
    ``channel_versions`` are its ``new_versions``), and the pending writes with their
    task ids (and task paths where the source stores them). Resumable and idempotent.
    """
    report = MigrationReport()
    found = thread_namespaces(source)
    names = sorted(found) if threads is None else [t for t in threads if t in found]
    report.threads = len(names)
    for thread in progress(names, total=len(names)) if progress else names:
        report.namespaces += len(found[thread])
        paths = _task_paths(source, thread)
        for t in _in_order(_thread_tuples(source, thread, found[thread])):
            _copy_one(t, target, paths, report)
    return report


def _copy_one(
    t: CheckpointTuple,
    target: RedisClusterSaver,
    paths: Mapping[tuple[str, str, str], str],
    report: MigrationReport,
) -> None:
    conf = t.config["configurable"]
    thread, ns, cid = conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
    here = _cfg(thread, ns, cid)
    if target.get_tuple(here) is None:
        parent = t.parent_config["configurable"].get("checkpoint_id") if t.parent_config else None
        checkpoint = t.checkpoint
        target.put(
            _cfg(thread, ns, parent), checkpoint, t.metadata, dict(checkpoint["channel_versions"])
        )
        report.migrated += 1
    else:
        report.already_there += 1
    tasks: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for task_id, channel, value in t.pending_writes or []:
        tasks[task_id].append((channel, value))
    for task_id, writes in tasks.items():
        target.put_writes(here, writes, task_id, paths.get((ns, cid, task_id), ""))
        report.writes += len(writes)


# --------------------------------------------------------------------------- verifying


def _shape(t: CheckpointTuple) -> tuple[Any, ...]:
    conf = t.config["configurable"]
    parent = t.parent_config["configurable"].get("checkpoint_id") if t.parent_config else None
    return (
        conf.get("checkpoint_ns", ""),
        conf["checkpoint_id"],
        parent,
        t.metadata,
        t.checkpoint["channel_versions"],
        sorted(t.pending_writes or [], key=repr),
    )


def _same_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal channel values; a DeltaChannel snapshot one side holds and the other does
    not is no difference: savers that store values by version return the snapshot of
    that version at later checkpoints too, savers that store whole checkpoints only at
    the checkpoint that took it, and LangGraph rebuilds the same value either way."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    for channel in set(a) | set(b):
        if channel in a and channel in b:
            if a[channel] != b[channel]:
                return False
        elif not isinstance(a.get(channel, b.get(channel)), _DeltaSnapshot):
            return False
    return True


def _same(a: CheckpointTuple | None, b: CheckpointTuple | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return _shape(a) == _shape(b) and _same_values(
        a.checkpoint["channel_values"], b.checkpoint["channel_values"]
    )


def _keyed(tuples: Iterable[CheckpointTuple]) -> dict[tuple[str, str], CheckpointTuple]:
    out = {}
    for t in tuples:
        conf = t.config["configurable"]
        out[(conf.get("checkpoint_ns", ""), conf["checkpoint_id"])] = t
    return out


def verify(
    source: BaseCheckpointSaver[Any],
    target: RedisClusterSaver,
    threads: Iterable[str] | None = None,
) -> list[str]:
    """Threads (of ``threads``, or all the source has) that differ between the two
    savers: the same checkpoints in every namespace, each with the same parent,
    metadata, channel values and versions and pending writes (each read by id); the
    same latest checkpoint; and no checkpoint here that the source lacks."""
    found = thread_namespaces(source)
    names = sorted(found) if threads is None else list(threads)
    differ = []
    for thread in names:
        theirs = _keyed(_thread_tuples(source, thread, found.get(thread, set())))
        ours = _keyed(target.list({"configurable": {"thread_id": thread}}))
        same = theirs.keys() == ours.keys() and all(_same(theirs[k], ours[k]) for k in theirs)
        # the latest by id only: a saver's get_tuple without an id may read less
        # (langgraph-checkpoint-redis 0.5 then leaves out the pending writes)
        a, b = source.get_tuple(_cfg(thread, "")), target.get_tuple(_cfg(thread, ""))
        same_latest = (a is None) == (b is None) and (
            a is None or b is None or a.checkpoint["id"] == b.checkpoint["id"]
        )
        if not same or not same_latest:
            differ.append(thread)
    return differ
