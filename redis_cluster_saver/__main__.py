"""``python -m redis_cluster_saver doctor URL``: what the saver finds on a server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from redis.exceptions import RedisError

from .saver import RedisClusterSaver


def doctor(url: str, prefix: str, args: dict[str, object]) -> int:
    try:
        with RedisClusterSaver.from_conn_string(url, key_prefix=prefix, connection_args=args) as s:
            caps = s.capabilities
    except (RedisError, OSError, ValueError) as exc:
        print(f"cannot use {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    assert caps is not None
    rows = caps.rows()
    width = max(len(k) for k, _ in rows)
    print(f"redis-cluster-saver doctor: {url}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    for note in caps.notes:
        print(f"  note: {note}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="redis-cluster-saver")
    commands = parser.add_subparsers(dest="command", required=True)
    doc = commands.add_parser("doctor", help="probe a server and print what the saver finds")
    doc.add_argument("url", help="redis://, rediss:// or redis+sentinel:// URL")
    doc.add_argument("--prefix", default="rcs", help="key prefix (the probe key lives under it)")
    doc.add_argument("--socket-timeout", type=float, default=5.0)
    options = parser.parse_args(argv)
    return doctor(options.url, options.prefix, {"socket_timeout": options.socket_timeout})


if __name__ == "__main__":
    sys.exit(main())
