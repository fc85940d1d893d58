"""`make demo`: a LangGraph agent checkpointed on a local 6-node Redis Cluster, with
its long-term memory in a store on the same cluster.

Starts the cluster (3 primaries, 3 replicas) with the project's harness, runs a
graph with a Send fan-out, a subgraph, an interrupt and a resume, prints the
thread's history, and shows that every key of the thread sits on one slot of one
primary. The graph's last node writes to the store; the demo reads it back. The
cluster is stopped at the end.
"""

from __future__ import annotations

import os
import time
from typing import Any

from redis.crc import key_slot

from cluster.harness import start, stop
from examples.graph import MEMORY, build_graph, run_demo_graph
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.store import RedisClusterStore

THREAD = "demo: research {hash tags}"
PREFIX = "demo"
STORE_PREFIX = "demo-memory"


def show_history(saver: RedisClusterSaver) -> None:
    graph = build_graph(saver)
    config = {"configurable": {"thread_id": THREAD}}
    print(f"\nHistory of thread {THREAD!r}, newest first:")
    print(f"  {'step':>4}  {'source':<7} {'next':<26} {'messages':>8}  checkpoint id")
    for snap in graph.get_state_history(config):
        md = snap.metadata or {}
        nxt = ",".join(snap.next) or "-"
        cid = snap.config["configurable"]["checkpoint_id"]
        messages = len(snap.values.get("messages", []))
        print(
            f"  {md.get('step', ''):>4}  {md.get('source', ''):<7} {nxt:<26} {messages:>8}  {cid}"
        )
    root = list(saver.list({"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}))
    every = list(saver.list({"configurable": {"thread_id": THREAD}}))
    print(f"  ({len(root)} checkpoints in the root namespace, {len(every)} with the subgraph's)")


def show_placement(saver: RedisClusterSaver) -> None:
    client: Any = saver.client
    keys: list[bytes] = []
    for node in client.get_primaries():
        found = client.get_redis_connection(node).scan_iter(match=f"{PREFIX}:*")
        keys += [k for k in found if b":dir:" not in k]  # the directory spans threads
    slots = {client.cluster_keyslot(k) for k in keys}
    owner = client.nodes_manager.get_node_from_slot(next(iter(slots)))
    print(f"\nThe thread's {len(keys)} keys, each with its CLUSTER KEYSLOT:")
    for key in sorted(keys):
        print(f"  {client.cluster_keyslot(key):>5}  {key.decode(errors='replace')}")
    verdict = "one slot" if len(slots) == 1 else f"{len(slots)} slots (unexpected!)"
    print(f"\nAll keys on {verdict}: slot {sorted(slots)} on primary {owner.name}")
    if len(slots) != 1:
        raise SystemExit(1)


def show_memory(store: RedisClusterStore) -> None:
    print(f"\nLong-term memory (the store, same cluster), namespace {MEMORY}:")
    for item in store.search(MEMORY):
        print(f"  {item.key!r}: {item.value}")
    slot = key_slot(store.plans.layout.store(MEMORY).index.encode())
    print(f"  namespaces: {store.list_namespaces()}; the label {MEMORY[0]!r} lives on slot {slot}")


def main() -> None:
    began = time.monotonic()
    print("Starting a local Redis Cluster (3 primaries + 3 replicas)...")
    deployment = start("cluster", owner_pid=os.getpid())
    try:
        print(f"  ready in {time.monotonic() - began:.1f} s at {deployment.url}")
        with (
            RedisClusterSaver.from_conn_string(deployment.url, key_prefix=PREFIX) as saver,
            RedisClusterStore.from_conn_string(deployment.url, key_prefix=STORE_PREFIX) as store,
        ):
            final = run_demo_graph(saver, THREAD, store)
            print("\nThe graph paused in the review subgraph, was resumed, and finished with:")
            for message in final.values["messages"]:
                print(f"  - {message}")
            show_history(saver)
            show_placement(saver)
            show_memory(store)
    finally:
        stop(deployment)
        print("\nCluster stopped.")


if __name__ == "__main__":
    main()
