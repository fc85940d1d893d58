"""Maintenance: delete_thread, prune, delete_for_runs and copy_thread, one script per
thread each, and the directory kept exact around them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import codec, scripts, search, validation
from .across import CrossThread
from .keys import ThreadKeys
from .plan import (
    Arg,
    Call,
    Command,
    Plan,
    RoundTrip,
    ScriptCall,
)
from .session import flatten
from .writes import Writes

PRUNE_STRATEGIES = ("keep_latest", "delete")


class Maintenance(Writes, CrossThread):
    """The maintenance plans."""

    def _unlist(self, thread_ids: Sequence[str]) -> Plan[None]:
        """Drop emptied threads from the directory. A writer in another process may
        have written one of them again since its script ran, and that writer may
        have listed it before this removal: so each is checked once more after the
        removal, and listed again if it holds data. Together with the writer's own
        rule (list again after a write that found the thread absent, see
        :meth:`_publish`), whichever of the two acts last leaves a live thread listed."""
        for tid in thread_ids:
            self.known_threads.discard(tid)
        entries = {tid: self.layout.directory(tid) for tid in thread_ids}
        yield RoundTrip(tuple(Command.of("SREM", d, t) for t, d in entries.items()))
        alive = yield RoundTrip(
            tuple(Command.of("EXISTS", self.layout.thread(t).namespaces) for t in thread_ids)
        )
        again = [Command.of("SADD", entries[t], t) for t, n in zip(thread_ids, alive) if int(n)]
        if again:
            yield RoundTrip(tuple(again))

    def _per_thread(
        self, thread_ids: Sequence[str], make: Callable[[ThreadKeys], ScriptCall]
    ) -> Plan[None]:
        """Run one script per thread (each atomic), then drop emptied threads from
        the directory; scripts answer with the namespaces the thread has left."""
        if not thread_ids:
            return
        calls = [make(self.layout.thread(tid)) for tid in thread_ids]
        for tid in thread_ids:  # what is remembered may be gone
            self.lists.forget(tid)
        left = yield from self._scripts(calls)
        gone = [tid for tid, n in zip(thread_ids, left, strict=True) if not n]
        if gone:
            yield from self._unlist(gone)

    def delete_thread(self, thread_id: str) -> Plan[None]:
        """Delete every key of a thread."""
        tid = validation.text(thread_id, "thread_id")
        yield from self._per_thread([tid], self._drop_call)

    @staticmethod
    def _drop_call(keys: ThreadKeys) -> ScriptCall:
        return ScriptCall(scripts.DELETE_THREAD, (keys.namespaces,), (keys.handle,))

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> Plan[None]:
        """``keep_latest`` (per namespace), ``delete``, or ``keep_last=N`` newest.

        Ancestors a kept checkpoint needs to rebuild DeltaChannel state are kept too.
        """
        tids = [validation.text(t, "thread_id") for t in thread_ids]
        if keep_last is not None:
            if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
                raise ValueError(f"keep_last must be a non-negative int, not {keep_last!r}")
            keep = keep_last
        elif strategy == "keep_latest":
            keep = 1
        elif strategy == "delete":
            keep = 0
        else:
            raise ValueError(
                f"unknown prune strategy {strategy!r}; use one of {PRUNE_STRATEGIES} or keep_last=N"
            )
        yield from self._per_thread(
            tids, lambda k: ScriptCall(scripts.PRUNE, (k.namespaces,), (k.handle, keep))
        )

    def delete_for_runs(self, run_ids: Sequence[str]) -> Plan[None]:
        """Delete the checkpoints (and their writes) made by these runs, thread by thread."""
        runs = [validation.text(r, "run_id") for r in run_ids]
        if not runs:
            return
        if self._indexed() and all(search._tag_safe(r) for r in runs):
            tids = yield from self._with_indexes(lambda: self._indexed_threads(runs))
        else:
            tids = yield from self.thread_ids()
        yield from self._per_thread(
            tids, lambda k: ScriptCall(scripts.DELETE_RUNS, (k.namespaces,), (k.handle, *runs))
        )

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> Plan[None]:
        """Copy a thread's whole history (every namespace, parent chain and writes)."""
        src = validation.text(source_thread_id, "source_thread_id")
        dst = validation.text(target_thread_id, "target_thread_id")
        skeys, dkeys = self.layout.thread(src), self.layout.thread(dst)
        (exported,) = yield from self._scripts(
            [ScriptCall(scripts.EXPORT, (skeys.namespaces,), (skeys.handle,))]
        )
        self.lists.forget(dst)  # its values may be replaced
        if not exported:
            return
        calls: list[Call] = []
        for namespace in exported:
            ns = namespace.ns.decode()
            blobs = codec.pairs(namespace.blobs)
            if blobs:
                calls.append(Command(("HSET", dkeys.blobs(ns), *flatten(blobs))))
            ids: list[Arg] = []
            for exported_cp in namespace.checkpoints:
                cid = exported_cp.id.decode()
                cp = codec.pairs(exported_cp.checkpoint)
                cp[b"thread_id"] = dst.encode()
                cp[b"sort_key"] = search.sort_key(cid, dst, ns).encode()
                calls += [
                    Command.of("DEL", dkeys.checkpoint(ns, cid), dkeys.writes(ns, cid)),
                    Command(("HSET", dkeys.checkpoint(ns, cid), *flatten(cp))),
                ]
                writes = codec.pairs(exported_cp.writes)
                if writes:
                    calls.append(Command(("HSET", dkeys.writes(ns, cid), *flatten(writes))))
                ids += [0, cid]
            calls.append(Command.of("SADD", dkeys.namespaces, ns))
            if ids:
                calls.append(Command(("ZADD", dkeys.registry(ns), *ids), publishes=True))
        yield from self._publish(dst, dkeys, calls)
