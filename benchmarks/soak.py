"""The fault tests, longer: writers under load while a primary is killed, for
default and durable mode on a cluster and on a Sentinel group. Not part of
`make test`.

    python -m benchmarks.soak [--seconds 60] [--writers 16] [--threads 200]

Prints the table the README carries: writers, duration, acknowledged, lost,
errored, durability errors, failover time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from typing import Any

from cluster.faults import kill_primary, wait_for_failover
from cluster.harness import start, stop
from tests.support.faultload import lost, run_load

MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "durable": {"durability": {"replicas": 1, "timeout_ms": 1000}},
}


def url_of(dep: Any) -> str:
    if dep.topology == "sentinel":
        hosts = ",".join(f"{h}:{p}" for h, p in dep.sentinels)
        return f"redis+sentinel://{hosts}/{dep.service_name}"
    return str(dep.url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--threads", type=int, default=200)
    args = parser.parse_args()
    rows = []
    for topology in ("cluster", "sentinel"):
        for mode, extra in MODES.items():
            dep = start(topology, owner_pid=os.getpid())
            try:
                options = {
                    "key_prefix": f"soak{uuid.uuid4().hex[:6]}",
                    "failover_wait": 30,
                    **extra,
                }
                figures: dict[str, float] = {}

                def fault(dep: Any = dep, figures: dict[str, float] = figures) -> None:
                    began = time.monotonic()
                    victim = kill_primary(dep, 0)
                    wait_for_failover(dep, victim)
                    figures["failover"] = time.monotonic() - began

                tally = run_load(
                    url_of(dep),
                    options,
                    writers=args.writers,
                    threads=args.threads,
                    seconds=args.seconds,
                    fault=fault,
                    fault_at=args.seconds / 3,
                )
                reader = {k: v for k, v in options.items() if k != "durability"}
                gone = lost(url_of(dep), reader, tally)
                rows.append((topology, mode, tally, len(gone), figures.get("failover", 0.0)))
                print(
                    f"{topology} {mode}: {len(tally.acknowledged)} acknowledged, {len(gone)} lost"
                )
            finally:
                stop(dep)
    print(
        f"\n{args.writers} writers (half OS threads, half asyncio tasks) over {args.threads} "
        f"threads for {args.seconds:.0f} s, primary killed at {args.seconds / 3:.0f} s; "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        "| topology | mode | writers | duration | acknowledged | lost | errored | "
        "durability errors | failover |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for topology, mode, tally, gone, failover in rows:
        print(
            f"| {topology} | {mode} | {args.writers} | {args.seconds:.0f} s | "
            f"{len(tally.acknowledged)} | {gone} | {tally.errored} | {tally.durability_errors} | "
            f"{failover:.1f} s |"
        )


if __name__ == "__main__":
    main()
