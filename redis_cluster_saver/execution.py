"""Thin shells that drive plans over a redis-py client: one sync, one asyncio.

Everything that does not wait on the network (how a trip is queued, how a
script is invoked) lives in :class:`Shell`; the two subclasses only send.
"""

from __future__ import annotations

from typing import Any, TypeVar

from redis.exceptions import NoScriptError

from .commands import Call, Command, Plan, RoundTrip, ScriptCall

T = TypeVar("T")


def _evalsha_args(call: ScriptCall) -> tuple[Any, ...]:
    return (call.script.sha, len(call.keys), *call.keys, *call.args)


def _eval_args(call: ScriptCall) -> tuple[Any, ...]:
    return (call.script.source, len(call.keys), *call.keys, *call.args)


class Shell:
    """What the sync and async shells share: how each trip maps onto commands."""

    def __init__(self, client: Any, *, transactions: bool = True) -> None:
        self.client = client
        self.transactions = transactions

    @staticmethod
    def queue(pipe: Any, call: Call) -> None:
        """Scripts inside a pipeline go as EVAL: a NOSCRIPT inside MULTI would
        fail one command of the transaction while the rest commit."""
        if isinstance(call, Command):
            pipe.execute_command(*call.args)
        else:
            pipe.execute_command("EVAL", *_eval_args(call))

    def pipeline(self, trip: RoundTrip) -> Any:
        pipe = self.client.pipeline(transaction=trip.atomic and self.transactions)
        for call in trip.calls:
            self.queue(pipe, call)
        return pipe

    @staticmethod
    def single(trip: RoundTrip) -> Call | None:
        """The call of a one-call trip: it needs neither pipeline nor MULTI."""
        return trip.calls[0] if len(trip.calls) == 1 else None


class SyncShell(Shell):
    def run(self, plan: Plan[T]) -> T:
        replies: Any = None
        while True:
            try:
                trip = plan.send(replies)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            replies = self.execute(trip)

    def execute(self, trip: RoundTrip) -> list[Any]:
        call = self.single(trip)
        if call is None:
            return list(self.pipeline(trip).execute())
        if isinstance(call, Command):
            return [self.client.execute_command(*call.args)]
        try:
            return [self.client.execute_command("EVALSHA", *_evalsha_args(call))]
        except NoScriptError:
            return [self.client.execute_command("EVAL", *_eval_args(call))]


class AsyncShell(Shell):
    async def run(self, plan: Plan[T]) -> T:
        replies: Any = None
        while True:
            try:
                trip = plan.send(replies)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            replies = await self.execute(trip)

    async def execute(self, trip: RoundTrip) -> list[Any]:
        call = self.single(trip)
        if call is None:
            return list(await self.pipeline(trip).execute())
        if isinstance(call, Command):
            return [await self.client.execute_command(*call.args)]
        try:
            return [await self.client.execute_command("EVALSHA", *_evalsha_args(call))]
        except NoScriptError:
            return [await self.client.execute_command("EVAL", *_eval_args(call))]
