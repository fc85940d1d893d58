"""A network partition under load, checked the way Jepsen checks a database.

Agents in real OS processes write threads whose slot lives on one primary. Half the
processes sit on that primary's side of the partition, half on the majority side
(``cluster.network``). The primary is cut off from every other server for longer than
the failover takes, the agents keep writing, then the partition heals. Afterwards every
checkpoint a caller was told was stored is looked for, and every thread is read whole.

Used by tests/integration/test_partitions.py (short runs) and benchmarks/partition.py
(``make bench-partition``, longer runs that print the README's table).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint
from redis.crc import key_slot

from cluster.faults import wait_for_failover
from cluster.harness import start, stop
from cluster.model import Deployment, Node
from cluster.network import Network
from cluster.processes import admin_client, command, wait_until
from cluster.topologies import cluster_health, cluster_view, sentinel_health
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.keys import KeyLayout

SIDES = ("minority", "majority")
PREFIX = "jp"
SOCKET_TIMEOUT = 1.0
MESSAGE_WAIT = 90.0
"""Seconds any one message between the coordinator and an agent process may take."""

MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "durable": {"durability": {"replicas": 1, "timeout_ms": 300}},
    "min-replicas": {},  # the servers refuse writes without a replica; the saver as default
}
SERVER_SETTINGS: dict[str, list[tuple[str, str]]] = {
    "min-replicas": [("min-replicas-to-write", "1"), ("min-replicas-max-lag", "1")],
}


@dataclass(frozen=True)
class Scenario:
    """One run: where, which mode, how many agents, and the timeline in seconds."""

    topology: str  # cluster | sentinel
    mode: str  # a key of MODES
    processes: int = 4  # half on each side of the partition
    agents_per_process: int = 4
    before: float = 1.0  # writing before the cut
    partition: float = 6.0  # the cut lasts at least this, and past the failover
    after: float = 4.0  # writing after the heal
    failover_wait: float = 4.0
    max_steps: int = 2000  # per agent: bounds the load in count as well as time
    pace: float = 0.02  # seconds an agent waits between steps (a model call, in life)

    def options(self) -> dict[str, Any]:
        return {
            "key_prefix": PREFIX,
            "failover_wait": self.failover_wait,
            "connection_args": {
                "socket_timeout": SOCKET_TIMEOUT,
                "socket_connect_timeout": SOCKET_TIMEOUT,
            },
            **MODES[self.mode],
        }


# --------------------------------------------------------------------- the agents


@dataclass
class Attempt:
    """One put as its agent sent it: enough to know what a stored copy must hold."""

    thread: str
    cid: str
    parent: str | None
    mark: int  # the agent's attempt counter, appended to the parent's marks
    run: str
    side: str
    sent: float
    put_acked: float | None = None  # monotonic time the put returned
    writes_acked: float | None = None
    error: str | None = None
    ended: float = 0.0


@dataclass
class Report:
    """What one agent process saw."""

    side: str
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[tuple[str, str, float, float]] = field(default_factory=list)  # kind, op, t0, t1
    longest_call: float = 0.0
    crashed: str | None = None


PHASE_EVERY = 4
"""Every 4th attempt of an agent changes its ``phase`` channel; the puts between
inherit it, so they name a value an earlier put stored."""


def values_of(marks: list[int], thread: str) -> dict[str, Any]:
    """The channel values of a checkpoint whose chain of attempts is ``marks``."""
    values: dict[str, Any] = {"marks": marks, "agent": thread}
    phases = [m for m in marks if m % PHASE_EVERY == 0]
    if phases:
        values["phase"] = f"phase-{phases[-1]}"
    return values


def versions_of(marks: list[int]) -> dict[str, Any]:
    versions: dict[str, Any] = {"marks": marks[-1] + 1, "agent": 1}
    phases = [m for m in marks if m % PHASE_EVERY == 0]
    if phases:
        versions["phase"] = phases[-1]
    return versions


class Chain:
    """One agent's thread, carried from step to step as LangGraph's loop carries it:
    each put names the last acknowledged checkpoint as its parent. After an error the
    agent re-reads the latest checkpoint and goes on from what is stored, as a retried
    run does."""

    def __init__(self, thread: str, run: str, side: str) -> None:
        self.thread, self.run, self.side = thread, run, side
        self.parent: str | None = None
        self.marks: list[int] = []
        self.count = 0

    def config(self) -> Any:
        conf: dict[str, Any] = {"thread_id": self.thread, "checkpoint_ns": ""}
        if self.parent:
            conf["checkpoint_id"] = self.parent
        return {"configurable": conf}

    def next(self) -> tuple[Attempt, tuple[Any, Any, Any, Any]]:
        self.count += 1
        cp = empty_checkpoint()
        marks = [*self.marks, self.count]
        cp["channel_values"] = values_of(marks, self.thread)
        versions = versions_of(marks)
        cp["channel_versions"] = versions
        changed = {"marks": versions["marks"]}
        if len(marks) == 1:
            changed["agent"] = 1
        if "phase" in versions and versions["phase"] == self.count:
            changed["phase"] = self.count
        md = {"source": "loop", "step": len(marks), "run_id": self.run}
        attempt = Attempt(
            self.thread, cp["id"], self.parent, self.count, self.run, self.side, time.monotonic()
        )
        return attempt, (self.config(), cp, md, changed)

    def advance(self, attempt: Attempt) -> None:
        self.parent, self.marks = attempt.cid, [*self.marks, attempt.mark]

    def resume(self, stored: Any) -> None:
        if stored is None:
            self.parent, self.marks = None, []
        else:
            self.parent = stored.config["configurable"]["checkpoint_id"]
            self.marks = list(stored.checkpoint["channel_values"]["marks"])


def _timed(report: Report, lock: threading.Lock, call: Any, *args: Any) -> Any:
    began, op = time.monotonic(), call.__name__
    try:
        return call(*args)
    except Exception as exc:
        with lock:
            report.errors.append((type(exc).__name__, op, began, time.monotonic()))
        raise
    finally:
        with lock:
            report.longest_call = max(report.longest_call, time.monotonic() - began)


def _agent(
    saver: RedisClusterSaver,
    chain: Chain,
    report: Report,
    lock: threading.Lock,
    stop: threading.Event,
    max_steps: int,
    pace: float,
) -> None:
    reload = False
    while not stop.is_set() and chain.count < max_steps:
        if reload:
            try:
                config = {"configurable": {"thread_id": chain.thread, "checkpoint_ns": ""}}
                chain.resume(_timed(report, lock, saver.get_tuple, config))
                reload = False
            except Exception:
                stop.wait(0.05)
                continue
        attempt, args = chain.next()
        with lock:
            report.attempts.append(attempt)
        try:
            saved = _timed(report, lock, saver.put, *args)
            attempt.put_acked = time.monotonic()
            writes = [("note", attempt.mark)]
            _timed(report, lock, saver.put_writes, saved, writes, f"task-{attempt.mark}")
            attempt.writes_acked = time.monotonic()
            chain.advance(attempt)
            stop.wait(pace)
        except Exception as exc:
            attempt.error = f"{type(exc).__name__}: {str(exc)[:160]}"
            reload = True
            stop.wait(0.02)
        finally:
            attempt.ended = time.monotonic()


def agent_process(
    conn: Connection,
    url: str,
    options: dict[str, Any],
    threads: list[str],
    run: str,
    side: str,
    max_steps: int,
    pace: float,
) -> None:
    """A process of agents (one OS thread each, one saver between them): ready, go, stop."""
    report = Report(side)
    try:
        saver = RedisClusterSaver(url, **options)
        saver.setup()
        conn.send(("ready",))
        if conn.recv() != ("go",):
            return
        lock, stop = threading.Lock(), threading.Event()
        workers = [
            threading.Thread(
                target=_agent,
                args=(saver, Chain(t, run, side), report, lock, stop, max_steps, pace),
                daemon=True,
            )
            for t in threads
        ]
        for w in workers:
            w.start()
        conn.poll(MESSAGE_WAIT * 4)  # the stop message (or the coordinator is gone)
        stop.set()
        for w in workers:
            w.join(MESSAGE_WAIT)
        saver.close()
    except BaseException:
        report.crashed = traceback.format_exc()
    conn.send(("done", report))


# --------------------------------------------------------------- the coordinator


@dataclass
class Outcome:
    """Figures of one run (see ``row`` for the table) and what the checks found."""

    scenario: Scenario
    acknowledged: int = 0  # puts acknowledged over the whole run
    acknowledged_during: int = 0  # ... between the cut and the heal
    lost: int = 0  # acknowledged puts that no read finds afterwards
    lost_writes: int = 0  # acknowledged put_writes gone from a surviving checkpoint
    loss_window: float = 0.0  # seconds from the cut to the last lost acknowledgement
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    longest_call: float = 0.0
    failover: float = 0.0  # seconds from the cut until the majority side had a primary
    recover: float | None = None  # seconds from the heal until every minority agent wrote
    # a checkpoint that survived (to the primary that won)
    problems: list[str] = field(default_factory=list)  # broken guarantees, if any
    holes: int = 0  # listed checkpoints whose parent was lost (never in durable mode)
    lost_by_side: dict[str, int] = field(default_factory=dict)
    healed_at: float = 0.0  # seconds from the cut to the heal
    last_lost_at: dict[str, float] = field(default_factory=dict)  # side -> seconds from cut

    def row(self) -> dict[str, Any]:
        return {
            "topology": self.scenario.topology,
            "mode": self.scenario.mode,
            "acknowledged during": self.acknowledged_during,
            "lost": self.lost,
            "loss window s": round(self.loss_window, 2),
            "holes": self.holes,
            "errors": self.errors,
            "longest call s": round(self.longest_call, 2),
            "failover s": round(self.failover, 2),
            "recover s": None if self.recover is None else round(self.recover, 2),
        }


def _threads_on(dep: Deployment, victim: Node, count: int) -> list[str]:
    """Thread ids whose slot the victim serves (every thread, on Sentinel)."""
    if dep.topology != "cluster":
        return [f"agent-{i}" for i in range(count)]
    ranges = next(v["slots"] for v in cluster_view(victim.port) if v["id"] == victim.node_id)
    layout, found, i = KeyLayout(PREFIX), [], 0
    while len(found) < count:
        thread = f"agent-{i}"
        slot = key_slot(layout.thread(thread).registry("").encode())
        if any(lo <= slot <= hi for lo, hi in ranges):
            found.append(thread)
        i += 1
    return found


def _configure(dep: Deployment, mode: str) -> None:
    for node in dep.data_nodes:
        client = admin_client(node.port)
        try:
            for name, value in SERVER_SETTINGS.get(mode, []):
                command(client, "CONFIG", "SET", name, value)
        finally:
            client.close()


def _healed(dep: Deployment, old: Node, new: Node) -> str | None:
    if dep.topology == "cluster":
        return cluster_health(dep.data_nodes)
    return sentinel_health(dep.by_role("sentinel"), new, [old], dep.service_name or "")


@dataclass
class _Proc:
    process: Any
    conn: Connection
    side: str
    threads: list[str]


def _launch(net: Network, dep: Deployment, scenario: Scenario, threads: list[str]) -> list[_Proc]:
    ctx = multiprocessing.get_context("spawn")
    per = scenario.agents_per_process
    procs: list[_Proc] = []
    for p in range(scenario.processes):
        side = SIDES[p % 2]
        share = threads[p * per : (p + 1) * per]
        mine, theirs = ctx.Pipe()
        args = (theirs, dep.url, scenario.options(), share, f"run-{p}", side)
        args += (scenario.max_steps, scenario.pace)
        process = ctx.Process(target=agent_process, args=args, daemon=True)
        with net.inside(side):  # the process, and every socket it opens, live there
            process.start()
        theirs.close()
        procs.append(_Proc(process, mine, side, share))
    return procs


def _expect(conn: Connection, what: str) -> Any:
    if not conn.poll(MESSAGE_WAIT):
        raise TimeoutError(f"no {what} message from an agent process in {MESSAGE_WAIT} s")
    return conn.recv()


def run(scenario: Scenario, log: Any = print) -> Outcome:
    """Run ``scenario`` on a fresh deployment in a fresh network, and check it."""
    outcome = Outcome(scenario)
    with Network.create(SIDES) as net:
        dep = start(scenario.topology, network=net)
        procs: list[_Proc] = []
        try:
            with net.inside():
                victim = dep.primaries[0]
                _configure(dep, scenario.mode)
                threads = _threads_on(dep, victim, scenario.processes * scenario.agents_per_process)
            procs = _launch(net, dep, scenario, threads)
            for p in procs:
                ready = _expect(p.conn, "ready")
                if ready != ("ready",):
                    raise AssertionError(f"an agent process did not start: {ready[1].crashed}")
            for p in procs:
                p.conn.send(("go",))
            time.sleep(scenario.before)
            cut = time.monotonic()
            net.isolate(victim.host, with_clients=["minority"])
            with net.inside():
                promoted = wait_for_failover(dep, victim, timeout=30)
            outcome.failover = time.monotonic() - cut
            time.sleep(max(0.0, cut + scenario.partition - time.monotonic()))
            healed = time.monotonic()
            net.heal()
            with net.inside():
                wait_until(lambda: _healed(dep, victim, promoted), 30, "the partition to heal")
            time.sleep(max(0.0, healed + scenario.after - time.monotonic()))
            for p in procs:
                p.conn.send(("stop",))
            reports: list[Report] = []
            for p in procs:
                done = _expect(p.conn, "done")
                reports.append(done[1])
            for r in reports:
                if r.crashed:
                    outcome.problems.append(f"an agent process crashed:\n{r.crashed}")
            with net.inside():
                _check(dep, scenario, reports, cut, healed, outcome)
        finally:
            for p in procs:
                if p.process.is_alive():
                    p.process.kill()
                p.process.join(10)
            stop(dep)
    log(outcome.row())
    return outcome


# ------------------------------------------------------------------- the checks


def _expected_marks(attempts: dict[str, Attempt]) -> dict[str, list[int]]:
    """Every attempted checkpoint with the marks a stored copy must hold."""
    memo: dict[str | None, list[int]] = {None: []}
    for cid in attempts:
        path: list[str] = []
        at: str | None = cid
        while at not in memo:
            assert at is not None
            path.append(at)
            at = attempts[at].parent
        for c in reversed(path):
            memo[c] = [*memo[attempts[c].parent], attempts[c].mark]
    return {cid: memo[cid] for cid in attempts}


def _check(
    dep: Deployment,
    scenario: Scenario,
    reports: list[Report],
    cut: float,
    healed: float,
    out: Outcome,
) -> None:
    attempts = {a.cid: a for r in reports for a in r.attempts}
    expected = _expected_marks(attempts)
    acked = [a for a in attempts.values() if a.put_acked is not None]
    out.acknowledged = len(acked)
    out.acknowledged_during = sum(1 for a in acked if cut <= a.put_acked <= healed)  # type: ignore[operator]
    out.errors = sum(len(r.errors) for r in reports)
    for r in reports:
        for kind, _, _, _ in r.errors:
            out.error_kinds[kind] = out.error_kinds.get(kind, 0) + 1
    out.longest_call = max((r.longest_call for r in reports), default=0.0)
    out.healed_at = healed - cut
    threads = sorted({a.thread for a in attempts.values()})
    options = {k: v for k, v in scenario.options().items() if k != "durability"}
    with RedisClusterSaver(dep.url, **options) as saver:
        durable = "durability" in MODES[scenario.mode]
        listed = _read_threads(saver, threads, attempts, expected, out, durable)
        _check_losses(saver, acked, listed, cut, out)
        _check_cross_thread(saver, listed, reports, out)
    # the first write after the heal that the surviving primary kept: on Sentinel the
    # old primary takes writes (and loses them) until the sentinels demote it
    kept = {cid for ids in listed.values() for cid in ids}
    minority = [
        a
        for a in acked
        if a.side == "minority" and a.put_acked > healed and a.cid in kept  # type: ignore[operator]
    ]
    first: dict[str, float] = {}
    for a in minority:
        first[a.thread] = min(first.get(a.thread, a.put_acked), a.put_acked)  # type: ignore[type-var]
    minority_threads = {a.thread for a in attempts.values() if a.side == "minority"}
    if minority_threads and set(first) == minority_threads:
        out.recover = max(first.values()) - healed
    bound = scenario.failover_wait + 2 * SOCKET_TIMEOUT + 1.0
    if out.longest_call > bound:
        out.problems.append(f"a call took {out.longest_call:.2f} s, over {bound:.2f} s")


def _read_threads(
    saver: RedisClusterSaver,
    threads: list[str],
    attempts: dict[str, Attempt],
    expected: dict[str, list[int]],
    out: Outcome,
    durable: bool,
) -> dict[str, list[str]]:
    """Each thread's listed checkpoint ids, newest first, after checking that each reads
    back whole: the values and writes its agent sent, and its parent listed too."""
    listed: dict[str, list[str]] = {}
    for thread in threads:
        config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        tuples = list(saver.list(config))
        ids = [t.config["configurable"]["checkpoint_id"] for t in tuples]
        listed[thread] = ids
        if len(set(ids)) != len(ids):
            out.problems.append(f"{thread}: duplicate checkpoints listed")
        if ids != sorted(ids, reverse=True):
            out.problems.append(f"{thread}: not listed newest first")
        for tup in tuples:
            cid = tup.config["configurable"]["checkpoint_id"]
            sent = attempts.get(cid)
            if sent is None or sent.thread != thread:
                out.problems.append(f"{thread}: {cid} listed but never written there")
                continue
            want = values_of(expected[cid], thread)
            got = tup.checkpoint["channel_values"]
            if got != want:
                diff = {
                    k: (got.get(k), want.get(k)) for k in {*got, *want} if got.get(k) != want.get(k)
                }
                out.problems.append(f"{thread}: {cid} reads back torn: {str(diff)[:300]}")
            if sent.writes_acked is not None:
                want = [(f"task-{sent.mark}", "note", sent.mark)]
                if [tuple(w) for w in tup.pending_writes or []] != want:
                    out.lost_writes += 1
            parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            if parent != sent.parent:
                out.problems.append(f"{thread}: {cid} has parent {parent}, sent {sent.parent}")
            if parent is not None and parent not in ids:
                if parent not in attempts:
                    out.problems.append(f"{thread}: {cid} has a parent never written")
                elif durable:
                    out.problems.append(f"{thread}: {cid} has a hole: {parent} is gone")
                else:
                    out.holes += 1  # its parent was lost: acknowledged, or its write failed
    return listed


def _check_losses(
    saver: RedisClusterSaver,
    acked: list[Attempt],
    listed: dict[str, list[str]],
    cut: float,
    out: Outcome,
) -> None:
    last = cut
    for a in acked:
        if a.cid in listed.get(a.thread, ()):
            continue
        config: Any = {
            "configurable": {"thread_id": a.thread, "checkpoint_ns": "", "checkpoint_id": a.cid}
        }
        if saver.get_tuple(config) is not None:
            out.problems.append(f"{a.thread}: {a.cid} reads by id but is not listed")
            continue
        out.lost += 1
        out.lost_by_side[a.side] = out.lost_by_side.get(a.side, 0) + 1
        at = (a.put_acked or cut) - cut
        out.last_lost_at[a.side] = max(out.last_lost_at.get(a.side, 0.0), at)
        if a.writes_acked is not None:
            out.lost_writes += 1
        last = max(last, a.put_acked or cut)
    out.loss_window = last - cut if out.lost else 0.0


def _check_cross_thread(
    saver: RedisClusterSaver, listed: dict[str, list[str]], reports: list[Report], out: Outcome
) -> None:
    """``list(None)`` finds exactly the listed checkpoints; ``delete_for_runs`` of one
    process's run removes exactly that process's threads."""
    live = {(t, cid) for t, ids in listed.items() for cid in ids}
    seen = {
        (tup.config["configurable"]["thread_id"], tup.config["configurable"]["checkpoint_id"])
        for tup in saver.list(None)
    }
    if seen != live:
        out.problems.append(
            f"list(None) differs from the threads' lists: {len(seen - live)} extra, "
            f"{len(live - seen)} missing"
        )
    run = reports[0].attempts[0].run if reports and reports[0].attempts else None
    if run is None:
        return
    gone = {a.thread for a in reports[0].attempts}
    saver.delete_for_runs([run])
    left = {tup.config["configurable"]["thread_id"] for tup in saver.list(None)}
    want = {t for t, ids in listed.items() if ids} - gone
    if left != want:
        out.problems.append(
            f"after delete_for_runs, list(None) shows {sorted(left ^ want)} wrongly"
        )
