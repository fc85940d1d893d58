"""The saver's public methods made from its operations, each operation written once.

An operation (a plan of :class:`~.operations.Operations`, run on ``saver.ops``) becomes a
blocking method of the sync saver, a coroutine method of the async saver, and the
async saver's sync method that runs the coroutine on the saver's loop from another
thread. The three differ only in how they wait, so none is written by hand; each
keeps the operation's signature and docstring.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from .operations import Operations
from .plan import Plan

P = ParamSpec("P")
T = TypeVar("T")
Operation = Callable[Concatenate[Any, P], Plan[T]]


def _named(face: Any, op: Callable[..., Any], name: str) -> Any:
    functools.update_wrapper(face, op)
    face.__name__ = face.__qualname__ = name
    return face


def blocking(op: Operation[P, T], name: str) -> Callable[Concatenate[Any, P], T]:
    def face(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(op, self.ops, *args, **kwargs)  # type: ignore[no-any-return]

    return _named(face, op, name)  # type: ignore[no-any-return]


def awaitable(
    op: Operation[P, T], name: str
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    async def face(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(op, self.ops, *args, **kwargs)  # type: ignore[no-any-return]

    return _named(face, op, name)  # type: ignore[no-any-return]


def from_another_thread(op: Operation[P, T], name: str) -> Callable[Concatenate[Any, P], T]:
    """The async saver's sync method: the operation run on the saver's loop."""

    def face(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._wait(name, lambda: self._run(op, self.ops, *args, **kwargs))  # type: ignore[no-any-return]

    return _named(face, op, name)  # type: ignore[no-any-return]


def iterating(
    face: Callable[Concatenate[Any, P], list[T]], name: str
) -> Callable[Concatenate[Any, P], Iterator[T]]:
    """A listing face as the iterator LangGraph's ``list`` returns."""

    def listing(self: Any, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        yield from face(self, *args, **kwargs)

    return _named(listing, face, name)  # type: ignore[no-any-return]


def async_iterating(
    face: Callable[Concatenate[Any, P], Coroutine[Any, Any, list[T]]], name: str
) -> Callable[Concatenate[Any, P], AsyncIterator[T]]:
    """A listing face as the async iterator LangGraph's ``alist`` returns."""

    async def listing(self: Any, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        for item in await face(self, *args, **kwargs):
            yield item

    return _named(listing, face, name)  # type: ignore[no-any-return]


Style = Callable[[Operation[..., Any], str], Callable[..., Any]]

OPERATIONS: dict[str, Operation[..., Any]] = {
    "get_tuple": Operations.get_tuple,
    "list": Operations.list_checkpoints,
    "put": Operations.put,
    "put_writes": Operations.put_writes,
    "delete_thread": Operations.delete_thread,
    "delete_for_runs": Operations.delete_for_runs,
    "copy_thread": Operations.copy_thread,
    "prune": Operations.prune,
    "get_delta_channel_history": Operations.delta_channel_history,
    "list_threads": Operations.list_threads,
}
"""The plans behind the saver's public methods, by public name."""

C = TypeVar("C", bound=type)


def faced(
    style: Style, prefix: str = "", listing: Callable[..., Any] = iterating
) -> Callable[[C], C]:
    """A class decorator: every operation as a method ``<prefix><name>`` of ``style``
    (``list`` as the iterator ``listing`` makes of it)."""

    def install(cls: C) -> C:
        for name, op in OPERATIONS.items():
            public = prefix + name
            face = style(op, public)
            setattr(cls, public, listing(face, public) if name == "list" else face)
        return cls

    return install
