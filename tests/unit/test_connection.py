"""URLs to endpoints, before any connection is made."""

from __future__ import annotations

import pytest

from redis_cluster_saver.connection import client_args, parse_url


def test_plain_url() -> None:
    ep = parse_url("redis://127.0.0.1:7000/2")
    assert ep.seeds == [("127.0.0.1", 7000)] and ep.db == 2 and not ep.sentinel


def test_several_seeds_keep_credentials_on_the_first() -> None:
    ep = parse_url("rediss://user:p%40ss@h1:7000,h2:7001,h3")
    assert ep.seeds == [("h1", 7000), ("h2", 7001), ("h3", 6379)]
    assert ep.auth == {"username": "user", "password": "p@ss"}
    assert ep.first_url == "rediss://user:p%40ss@h1:7000"


def test_sentinel_url() -> None:
    ep = parse_url("redis+sentinel://:secret@s1:26379,s2:26380/mymaster/3")
    assert ep.sentinel and ep.service == "mymaster" and ep.db == 3
    assert ep.seeds == [("s1", 26379), ("s2", 26380)]
    assert ep.auth == {"password": "secret"}


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("localhost:6379", "not a Redis URL"),
        ("http://x", "scheme"),
        ("redis+sentinel://s1", "service"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_url(url)


def test_decode_responses_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        client_args({"decode_responses": True})
    assert client_args({"socket_timeout": 1})["decode_responses"] is False
