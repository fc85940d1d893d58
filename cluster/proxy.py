"""twemproxy (nutcracker) configuration, and what the proxy does not support.

Verified against nutcracker 0.5.0 (Debian 12) with valkey 9.1 backends and redis-py 8.1.
nutcracker answers an unsupported command by *closing the connection* (no error reply;
its log says ``parsed unsupported command 'X'``), which redis-py surfaces as
``ConnectionError: Connection closed by server.`` Closed on:

* ``HELLO`` (any version) and every ``CLIENT`` subcommand (``SETINFO``, ``SETNAME``, ...).
  redis-py 8 defaults to RESP3 (``HELLO 3``) and sends ``CLIENT SETINFO`` on connect, so a
  default client cannot even PING. Pass ``protocol=2, driver_info=None`` (``driver_info=None``
  is the non-deprecated spelling of ``lib_name=None, lib_version=None``). ``?protocol=2`` in
  the URL is honoured by redis-py but ``driver_info`` cannot be set from a URL, hence
  ``Deployment.client_kwargs``.
* Transactions: ``MULTI``, ``EXEC``, ``DISCARD``, ``WATCH``, ``UNWATCH``
  (so ``pipeline(transaction=True)`` fails; ``transaction=False`` works).
* Keyspace-wide / server commands: ``SCAN``, ``KEYS``, ``INFO``, ``DBSIZE``, ``FLUSHDB``,
  ``TIME``, ``CONFIG``, ``CLUSTER``, ``READONLY``, ``WAIT``, ``SELECT``, ``MEMORY``,
  ``OBJECT``, ``ECHO``, ``PING <msg>`` (bare ``PING`` works, answered by the proxy),
  ``FUNCTION``/``FCALL``, pub/sub (``PUBLISH``, ``SUBSCRIBE``), blocking ``BLPOP``.
* Scripts: ``SCRIPT LOAD``/``SCRIPT EXISTS``, ``EVAL``/``EVALSHA`` with ``numkeys=0``,
  ``EVAL_RO``/``EVALSHA_RO``. ``EVAL`` with >= 1 key works (routed by its first key);
  ``EVALSHA`` with >= 1 key of an unknown sha gets a normal ``NOSCRIPT`` error, but
  redis-py's ``Script`` object then falls back to ``SCRIPT LOAD``, which closes the
  connection. Use plain ``EVAL`` (or load scripts on every backend out of band).
* Newer commands missing from 0.5.0's table: streams (``XADD``, ``XLEN``, ``XRANGE``),
  ``RENAME``, ``EXPIRETIME``, ``HEXPIRE``, ``LCS``, ``SINTERCARD``, and module commands
  (``JSON.*``, ``FT.*``), which is also why backends need no modules.

Works: strings (``SET .. EX NX``, ``GETDEL``, ``GETEX``), hashes, lists, sets, sorted sets
(``ZRANGE .. BYSCORE``, ``ZRANGESTORE``), ``EXPIRE``/``TTL``, ``DEL``/``UNLINK``/``EXISTS``/
``TOUCH``/``MGET``/``MSET`` (split per key by the proxy, so not atomic across tags),
``COPY``, ``ZUNIONSTORE``, ``HSCAN``/``SSCAN``/``ZSCAN``, ``DUMP``, ``COMMAND``. Keys are
placed by the text inside ``{}`` (``hash_tag: "{}"``): ``{a}x`` and ``{a}y`` always land
on the same backend, checked with ketama/modula and fnv1a_64/crc32a (modula + fnv1a_64
spreads poorly over three backends, so the harness uses ketama + fnv1a_64).
"""

from __future__ import annotations

from collections.abc import Sequence

from .ports import HOST

POOL_NAME = "rcs"


def nutcracker_config(
    listen_port: int,
    backend_ports: Sequence[int],
    *,
    distribution: str = "ketama",
    hash_name: str = "fnv1a_64",
) -> str:
    """YAML for one pool sharding by ``{hash tag}`` over ``backend_ports``.

    Backends get stable names (``s0``..) so ketama placement does not depend on ports.
    """
    servers = "\n".join(f"    - {HOST}:{port}:1 s{i}" for i, port in enumerate(backend_ports))
    return (
        f"{POOL_NAME}:\n"
        f"  listen: {HOST}:{listen_port}\n"
        f"  hash: {hash_name}\n"
        '  hash_tag: "{}"\n'
        f"  distribution: {distribution}\n"
        "  redis: true\n"
        "  auto_eject_hosts: false\n"
        "  server_retry_timeout: 2000\n"
        "  server_failure_limit: 3\n"
        "  timeout: 2000\n"
        "  preconnect: true\n"
        "  servers:\n"
        f"{servers}\n"
    )
