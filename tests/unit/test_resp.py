"""The saver's own RESP packer writes the bytes redis-py's packer writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection, PythonRespSerializer

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


@given(commands=st.lists(commands_, min_size=1, max_size=5))
def test_same_bytes_as_redis_py_in_latin_1(commands: list[tuple[Any, ...]]) -> None:
    conn = Connection(encoding="latin-1", encoding_errors="replace")
    # redis-py's own packer: with hiredis installed redis-py packs text as UTF-8
    # whatever the encoding, which the saver's packer does not follow (see _pack)
    conn._command_packer = PythonRespSerializer(conn._buffer_cutoff, conn.encoder.encode)
    packed = b"".join(conn.pack_commands(commands))
    assert resp(commands, "latin-1", "replace") == packed


def test_text_in_an_encoding_that_is_not_ascii_is_encoded_argument_by_argument() -> None:
    """ASCII text is framed as text only where the encoding writes it as ASCII."""
    parts = [x.encode("utf-16") for x in ("SET", "k", "v")] + [b"12"]
    expected = b"*4\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)
    assert resp([("SET", "k", "v", 12)], "utf-16") == expected


def test_the_c_packer_is_used_only_where_it_encodes_as_the_connection_does() -> None:
    """hiredis packs text as UTF-8: for a connection with another encoding the saver
    packs in Python, so a latin-1 client's values go as latin-1 either way."""
    from redis_cluster_saver.shells import _pack

    class Latin1:
        encoding, encoding_errors = "latin-1", "strict"

    assert _pack([("SET", "k", "\x80")], Latin1()) == [
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\x80\r\n"
    ]
