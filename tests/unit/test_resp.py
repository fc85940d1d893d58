"""The saver's own RESP packer writes the bytes redis-py's packer writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from redis_cluster_saver.shells import resp

args = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=50),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
)


names = st.sampled_from(["HSET", "EVALSHA", "MULTI", "ZADD"])
commands_ = st.tuples(names, st.lists(args, max_size=8)).map(lambda c: (c[0], *c[1]))


@given(st.lists(commands_, min_size=1, max_size=5))
def test_same_bytes_as_redis_py(commands: list[tuple[Any, ...]]) -> None:
    packed = b"".join(Connection().pack_commands(commands))
    assert resp(commands) == packed


def test_large_values_are_framed_whole() -> None:
    big = b"x" * 100_000
    assert resp([("SET", "k", big)]) == b"".join(Connection().pack_commands([("SET", "k", big)]))


@pytest.mark.parametrize("bad", [True, None, object(), [1]])
def test_other_types_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="cannot send"):
        resp([("SET", "k", bad)])
