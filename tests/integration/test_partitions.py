"""Network partitions, tested the way Jepsen tests them: what each mode promises while
a primary is cut off from its replica and the other servers, but not from the clients
on its side (tests/support/partition.py runs it; cluster/network.py makes the cut).

The short runs here check the promises; ``make bench-partition`` runs them longer and
prints the README's table. Each run prints its row.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from cluster.harness import start, stop
from cluster.network import NETNS_DIR, Network, orphans, remove, unavailable
from cluster.processes import admin_client
from tests.support.partition import Scenario, run

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))

SHORT = {"processes": 4, "agents_per_process": 4, "before": 1.0, "partition": 6.0, "after": 4.0}


def _host_rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def _reaches(net: Network, side: str, host: str, port: int) -> bool:
    with net.inside(side):
        client = redis.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        finally:
            client.close()


def _replication(net: Network, port: int) -> tuple[Any, Any]:
    with net.inside():
        client = admin_client(port)
        try:
            info = client.info("replication")
        finally:
            client.close()
    return info.get("role"), info.get("master_link_status")


def test_isolate_cuts_the_node_off_and_heal_joins_it_again() -> None:
    rules_before = _host_rules()
    with Network.create(("near", "far")) as net:
        dep = start("sentinel", network=net)
        try:
            primary, replica = dep.by_role("primary")[0], dep.by_role("replica")[0]
            assert primary.host != replica.host  # each server on an address of its own
            assert _reaches(net, "near", primary.host, primary.port)
            assert _reaches(net, "far", primary.host, primary.port)

            net.isolate(primary.host, with_clients=["near"])
            assert _reaches(net, "near", primary.host, primary.port)
            assert not _reaches(net, "near", replica.host, replica.port)
            assert not _reaches(net, "far", primary.host, primary.port)
            assert _reaches(net, "far", replica.host, replica.port)
            # the replica loses its primary too (server to server): its link goes down,
            # or the sentinels, cut off as well, have promoted it already
            deadline = time.monotonic() + 10
            while _replication(net, replica.port) == ("slave", "up"):
                assert time.monotonic() < deadline, "the replica still replicates"
                time.sleep(0.1)

            net.heal()
            assert _reaches(net, "far", primary.host, primary.port)
            assert _reaches(net, "near", replica.host, replica.port)
        finally:
            stop(dep)
        names = net.namespaces
    assert not [n for n in names if (NETNS_DIR / n).exists()]
    assert _host_rules() == rules_before  # the host's own packet filters were never touched


def test_a_network_that_cannot_be_made_leaves_nothing() -> None:
    before = set(NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else set()
    with pytest.raises(ValueError, match="client side"):
        Network.create(("minority", "Not A Name"))
    after = set(NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else set()
    assert after == before


def test_isolate_names_only_its_own_servers_and_sides() -> None:
    with Network.create(("near",)) as net:
        address = net.server_address()
        with pytest.raises(ValueError, match="not a server"):
            net.isolate("10.77.0.200")
        with pytest.raises(ValueError, match="no client side"):
            net.isolate(address, with_clients=["far"])
        assert net.cut == {}  # nothing half-applied


@pytest.mark.parametrize("mode", ["durable", "default", "min-replicas"])
@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_partition(topology: str, mode: str) -> None:
    outcome = run(Scenario(topology, mode, **SHORT))
    assert outcome.problems == []
    assert outcome.acknowledged > 0
    # clients left on the minority side find the new primary once they reach it
    assert outcome.recover is not None
    # to the primary that won: a cluster takes the old one back as a replica at once;
    # the sentinels demote it some 10 s after it is back, and until then it goes on
    # taking (and then losing) the writes of its side
    assert outcome.recover < (3.0 if topology == "cluster" else 20.0)
    if mode == "durable":
        assert outcome.lost == 0 and outcome.lost_writes == 0
        assert outcome.holes == 0
        assert outcome.error_kinds.get("DurabilityError", 0) > 0  # refused, not acknowledged
    elif mode == "default":
        assert outcome.lost > 0  # the partition bit: the old primary took writes it lost
    else:
        assert outcome.error_kinds.get("ResponseError", 0) > 0  # NOREPLICAS
        assert outcome.loss_window < 4.0  # min-replicas-max-lag 1 bounds the window


def test_the_namespaces_of_a_killed_process_are_found_and_removed() -> None:
    """What ``python -m cluster down`` sweeps: a process killed before it could."""
    code = (
        "import os, signal, sys\n"
        "from cluster.network import Network\n"
        "net = Network.create(('near',))\n"
        "print(' '.join(net.namespaces), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60
    )
    made = done.stdout.split()
    assert len(made) == 2 and all((NETNS_DIR / n).exists() for n in made)
    with Network.create(("near",)) as mine:
        found = orphans()
        assert set(made) <= set(found)
        assert mine.lab not in found  # this process is alive
        remove(made)
    assert not [n for n in made if (NETNS_DIR / n).exists()]
