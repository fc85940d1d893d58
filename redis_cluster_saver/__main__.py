"""``redis-cluster-saver`` / ``python -m redis_cluster_saver``: look at checkpoints.

Exit codes scripts can use: 0 done, 1 no such thread or checkpoint (or, for
``migrate --verify``, threads that differ; for ``export``, a channel without
messages), 2 the server or the source cannot be used (unreachable, refused) or the
arguments are wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from redis.exceptions import RedisError

from .saver import RedisClusterSaver

NOT_FOUND, UNUSABLE = 1, 2


def _saver(options: argparse.Namespace) -> RedisClusterSaver:
    args = {"socket_timeout": options.socket_timeout}
    saver = RedisClusterSaver(options.url, key_prefix=options.prefix, connection_args=args)
    saver.setup()
    return saver


def _when(ts_ms: Any) -> str:
    try:
        return datetime.fromtimestamp(int(ts_ms) / 1000, tz=timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
    except (TypeError, ValueError):
        return "-"


def doctor(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """What the detector finds, as a table."""
    caps = saver.capabilities
    assert caps is not None
    rows = caps.rows()
    width = max(len(k) for k, _ in rows)
    print(f"redis-cluster-saver doctor: {options.url}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    for note in caps.notes:
        print(f"  note: {note}")
    ttl = options.ttl is not None
    problem = caps.eviction_problem(ttl)
    if problem is not None:
        print(f"  problem: {problem}")
    elif caps.evicts(ttl) is None:
        print(
            "  note: maxmemory-policy unknown (INFO refused): evicted keys damage threads; "
            "make sure the server runs with `maxmemory-policy noeviction`"
        )
    elif not ttl and caps.evicts(True):
        print(
            "  note: a volatile-* maxmemory-policy evicts keys with an expiry: safe while "
            "the saver runs without a ttl (pass --ttl MINUTES to check a saver with one)"
        )
    return 0


def threads(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """Threads, newest activity first (the newest checkpoint id of each)."""
    newest = []
    for tid in saver.list_threads():
        latest = next(iter(saver.list({"configurable": {"thread_id": tid}}, limit=1)), None)
        if latest is not None:
            newest.append((latest.checkpoint["id"], tid, latest.metadata.get("step")))
    newest.sort(reverse=True)
    page = newest[options.offset : options.offset + options.limit]
    for cid, tid, step in page:
        print(f"{tid}\tlatest {cid}\tstep {step}")
    print(f"({len(page)} of {len(newest)} threads)", file=sys.stderr)
    return 0


def history(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """A thread's checkpoints, newest first, or as a tree."""
    tuples = list(saver.list({"configurable": {"thread_id": options.thread}}))
    if not tuples:
        print(f"no thread {options.thread!r}", file=sys.stderr)
        return NOT_FOUND
    if options.tree:
        return _tree(tuples)
    print("step  source  time (UTC)           writes  namespace  checkpoint id")
    for t in tuples:
        md, conf = t.metadata, t.config["configurable"]
        print(
            f"{md.get('step', ''):>4}  {md.get('source', ''):<7} {_when(_ts(t)):<20} "
            f"{len(t.pending_writes or []):>6}  {conf['checkpoint_ns'] or '-':<10} "
            f"{conf['checkpoint_id']}"
        )
    return 0


def _ts(t: Any) -> Any:
    try:
        return datetime.fromisoformat(t.checkpoint["ts"]).timestamp() * 1000
    except (KeyError, TypeError, ValueError):
        return None


def _tree(tuples: list[Any]) -> int:
    """Forks (time travel, update_state on a past checkpoint) as branches; subgraph
    namespaces under the root checkpoint they ran from (by metadata parents)."""
    children: dict[str | None, list[Any]] = {}
    ids = {t.config["configurable"]["checkpoint_id"] for t in tuples}
    for t in sorted(tuples, key=lambda t: t.config["configurable"]["checkpoint_id"]):
        parent = t.parent_config["configurable"]["checkpoint_id"] if t.parent_config else None
        ns = t.config["configurable"]["checkpoint_ns"]
        if ns and parent is None:  # a subgraph's first checkpoint hangs under its parent
            parent = (t.metadata.get("parents") or {}).get("")
        children.setdefault(parent if parent in ids else None, []).append(t)

    def draw(t: Any, depth: int) -> None:
        conf, md = t.config["configurable"], t.metadata
        ns = f" [{conf['checkpoint_ns']}]" if conf["checkpoint_ns"] else ""
        print(
            f"{'  ' * depth}- {conf['checkpoint_id']} step {md.get('step')} "
            f"{md.get('source', '')}{ns}"
        )
        for child in children.get(conf["checkpoint_id"], []):
            draw(child, depth + 1)

    for root in children.get(None, []):
        draw(root, 0)
    return 0


def show(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """A checkpoint's values, metadata and pending writes, as JSON."""
    conf: dict[str, Any] = {"thread_id": options.thread, "checkpoint_ns": options.ns}
    if options.checkpoint:
        conf["checkpoint_id"] = options.checkpoint
    t = saver.get_tuple({"configurable": conf})
    if t is None:
        print(f"no checkpoint for {conf}", file=sys.stderr)
        return NOT_FOUND
    doc = {
        "config": t.config["configurable"],
        "metadata": t.metadata,
        "values": t.checkpoint["channel_values"],
        "pending_writes": [list(w) for w in t.pending_writes or []],
    }
    if options.json:
        print(json.dumps(doc, default=repr, ensure_ascii=False))
    else:
        print(json.dumps(doc, default=repr, ensure_ascii=False, indent=2))
    return 0


def delete(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """Delete a thread (1 if there is none)."""
    if not list(saver.list({"configurable": {"thread_id": options.thread}}, limit=1)):
        print(f"no thread {options.thread!r}", file=sys.stderr)
        return NOT_FOUND
    saver.delete_thread(options.thread)
    print(f"deleted {options.thread}")
    return 0


def prune(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """Keep the newest N checkpoints per namespace of each thread."""
    saver.prune(options.threads, keep_last=options.keep_last)
    print(f"pruned {len(options.threads)} thread(s) to their last {options.keep_last}")
    return 0


def copy(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """Copy a thread with its whole history (1 if the source does not exist)."""
    if not list(saver.list({"configurable": {"thread_id": options.source}}, limit=1)):
        print(f"no thread {options.source!r}", file=sys.stderr)
        return NOT_FOUND
    saver.copy_thread(options.source, options.target)
    print(f"copied {options.source} to {options.target}")
    return 0


def migrate(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """Copy every thread of the LangGraph saver on --from into this saver."""
    from tqdm import tqdm

    from .migrate import MigrationSourceError, redact, source_saver, verify
    from .migrate import migrate as run

    with contextlib.ExitStack() as stack:
        try:
            source = stack.enter_context(source_saver(options.source))
        except MigrationSourceError as exc:
            print(f"migrate: {exc}", file=sys.stderr)
            return UNUSABLE
        except Exception as exc:  # the source's own driver: psycopg, valkey, redis
            source_url = redact(options.source)
            print(f"cannot use {source_url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return UNUSABLE
        report = run(
            source,
            saver,
            progress=lambda xs, total: tqdm(xs, total=total, unit="thread", file=sys.stderr),
        )
        print(
            f"threads {report.threads}, namespaces {report.namespaces}, checkpoints migrated "
            f"{report.migrated}, already here {report.already_there}, pending writes "
            f"{report.writes}"
        )
        if options.verify:
            differ = verify(source, saver)
            print(f"verified {report.threads} threads: {len(differ)} differ")
            for thread in differ[:20]:
                print(f"  differs: {thread}")
            return 1 if differ else 0
    return 0


def export(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """A thread's messages as of a checkpoint (the latest by default), or every thread's."""
    from .export import ExportError, conversation_of

    if options.all_threads:
        return _export_all(saver, options)
    if not options.thread:
        print("export: give a THREAD or --all-threads", file=sys.stderr)
        return UNUSABLE
    conf: dict[str, Any] = {"thread_id": options.thread, "checkpoint_ns": options.ns}
    if options.checkpoint:
        conf["checkpoint_id"] = options.checkpoint
    try:
        _, messages = conversation_of(saver, {"configurable": conf}, options.channel)
    except ExportError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return NOT_FOUND
    if options.format == "json":
        print(json.dumps(messages, default=repr, ensure_ascii=False, indent=2))
    else:
        for message in messages:
            print(json.dumps(message, default=repr, ensure_ascii=False))
    return 0


def _export_all(saver: RedisClusterSaver, options: argparse.Namespace) -> int:
    """One object per thread: ``{"thread_id", "checkpoint_id", "messages"}``; threads
    whose latest checkpoint has no such channel are skipped and counted on stderr."""
    from tqdm import tqdm

    from .export import ExportError, conversation_of

    docs, skipped = [], 0
    names = sorted(saver.list_threads())
    for thread in tqdm(names, total=len(names), unit="thread", file=sys.stderr):
        config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": options.ns}}
        try:
            t, messages = conversation_of(saver, config, options.channel)
        except ExportError:
            skipped += 1
            continue
        doc = {
            "thread_id": thread,
            "checkpoint_id": t.config["configurable"]["checkpoint_id"],
            "messages": messages,
        }
        if options.format == "json":
            docs.append(doc)
        else:
            print(json.dumps(doc, default=repr, ensure_ascii=False), flush=True)
    if options.format == "json":
        print(json.dumps(docs, default=repr, ensure_ascii=False, indent=2))
    exported = len(names) - skipped
    print(
        f"exported {exported} thread(s); skipped {skipped} without messages in {options.channel!r}",
        file=sys.stderr,
    )
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(prog="redis-cluster-saver", description=__doc__)
    p.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    p.add_argument("--prefix", default="rcs", help="the savers' key prefix")
    p.add_argument("--socket-timeout", type=float, default=5.0)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="probe a server and print what the saver finds")
    d.add_argument("doctor_url", nargs="?", help="URL (instead of --url)")
    d.add_argument(
        "--ttl",
        type=float,
        metavar="MINUTES",
        help="the saver's default_ttl, if it has one (volatile-* policies evict those keys)",
    )
    t = sub.add_parser("threads", help="threads, newest activity first")
    t.add_argument("--limit", type=int, default=50)
    t.add_argument("--offset", type=int, default=0)
    h = sub.add_parser("history", help="a thread's checkpoints")
    h.add_argument("thread")
    h.add_argument("--tree", action="store_true", help="draw forks and subgraphs as a tree")
    s = sub.add_parser("show", help="a checkpoint's values (latest by default)")
    s.add_argument("thread")
    s.add_argument("checkpoint", nargs="?")
    s.add_argument("--ns", default="", help="checkpoint namespace")
    s.add_argument("--json", action="store_true", help="one line of JSON")
    x = sub.add_parser("delete", help="delete a thread")
    x.add_argument("thread")
    r = sub.add_parser("prune", help="keep the newest checkpoints of threads")
    r.add_argument("threads", nargs="+")
    r.add_argument("--keep-last", type=int, required=True)
    m = sub.add_parser("migrate", help="copy every thread of another LangGraph saver into --url")
    m.add_argument(
        "--from",
        dest="source",
        required=True,
        help="postgresql://..., sqlite:///path, valkey://... or redis://... (the older saver)",
    )
    m.add_argument("--verify", action="store_true", help="compare every thread afterwards")
    e = sub.add_parser("export", help="a thread's messages (latest checkpoint by default)")
    e.add_argument("thread", nargs="?")
    e.add_argument("--checkpoint", help="a checkpoint id (default: the latest)")
    e.add_argument("--ns", default="", help="checkpoint namespace")
    e.add_argument("--channel", default="messages", help="the channel holding the messages")
    e.add_argument("--format", choices=["jsonl", "json"], default="jsonl")
    e.add_argument(
        "--all-threads", action="store_true", help="every thread: one JSON object per thread"
    )
    c = sub.add_parser("copy", help="copy a thread with its whole history")
    c.add_argument("source")
    c.add_argument("target")
    return p


COMMANDS = {
    "doctor": doctor,
    "threads": threads,
    "history": history,
    "show": show,
    "delete": delete,
    "prune": prune,
    "copy": copy,
    "migrate": migrate,
    "export": export,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    options = parser().parse_args(argv)
    if options.command == "doctor" and options.doctor_url:
        options.url = options.doctor_url
    try:
        saver = _saver(options)
    except (RedisError, OSError, ValueError) as exc:
        print(f"cannot use {options.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return UNUSABLE
    try:
        return COMMANDS[options.command](saver, options)
    except (RedisError, OSError) as exc:
        print(f"{options.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return UNUSABLE
    except (ValueError, TypeError) as exc:
        print(f"{options.command}: {exc}", file=sys.stderr)
        return UNUSABLE
    finally:
        saver.close()


if __name__ == "__main__":
    sys.exit(main())
