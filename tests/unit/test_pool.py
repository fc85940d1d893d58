"""The asyncio cluster's per-node turns, without a server: arrival order, timeouts,
and no turn lost to a cancelled caller."""

from __future__ import annotations

import asyncio
import time

import pytest

from redis_cluster_saver.errors import PoolTimeoutError
from redis_cluster_saver.pool import PoolLimits, Turns


async def test_callers_beyond_the_limit_queue_in_arrival_order() -> None:
    turns, order = Turns("n", 2, 5.0), []

    async def caller(i: int) -> None:
        await turns.take()
        order.append(i)
        await asyncio.sleep(0.01)
        turns.give()

    await asyncio.gather(*(caller(i) for i in range(10)))
    assert order == list(range(10)) and turns.free == 2


async def test_a_wait_past_the_timeout_raises_and_leaves_the_count_whole() -> None:
    turns = Turns("n", 1, 0.2)
    await turns.take()
    began = time.monotonic()
    with pytest.raises(PoolTimeoutError, match=r"to n came free within pool_timeout=0\.2 s"):
        await turns.take()
    assert 0.18 <= time.monotonic() - began < 1.0
    turns.give()
    assert turns.free == 1 and not turns.waiters


async def test_a_cancelled_caller_loses_no_turn() -> None:
    turns = Turns("n", 1, 5.0)
    await turns.take()
    waiting = asyncio.ensure_future(turns.take())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    turns.give()
    assert turns.free == 1


async def test_a_turn_handed_to_a_caller_cancelled_meanwhile_passes_on() -> None:
    turns = Turns("n", 1, 5.0)
    await turns.take()
    first = asyncio.ensure_future(turns.take())
    second = asyncio.ensure_future(turns.take())
    await asyncio.sleep(0)
    turns.give()  # the turn goes to ``first``...
    first.cancel()  # ...which is cancelled before it runs: ``second`` gets it
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1.0)
    turns.give()
    assert turns.free == 1


@pytest.mark.parametrize(("max_connections", "pool_timeout"), [(1, 0.01), (64, 10), (500, 2.5)])
def test_good_limits_are_kept(max_connections: int, pool_timeout: float) -> None:
    limits = PoolLimits.parse(max_connections, pool_timeout)
    assert limits.blocking() == {"max_connections": max_connections, "timeout": pool_timeout}
