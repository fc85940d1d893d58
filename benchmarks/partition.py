"""The partition tests, longer: 32 agents in 8 processes, half of them on the isolated
primary's side, an 8 s partition, on a cluster and on a Sentinel group, in each mode.
Not part of `make test` (tests/integration/test_partitions.py runs the short version).

    python -m benchmarks.partition [--partition 8] [--processes 8] [--agents 4]

Prints the table the README carries: acknowledged during the partition, lost, the loss
window (seconds from the cut to the last acknowledged write that was lost), history
holes (checkpoints whose parent was lost), errors that reached a caller, the longest
call, the failover, and how long the minority side took to write again after the heal.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from typing import Any

from tests.support.partition import MODES, Scenario, run

COLUMNS = [
    ("topology", "topology"),
    ("mode", "mode"),
    ("acknowledged during", "acknowledged during"),
    ("lost", "lost"),
    ("loss window s", "loss window (s)"),
    ("holes", "holes"),
    ("errors", "errors"),
    ("longest call s", "longest call (s)"),
    ("failover s", "failover (s)"),
    ("recover s", "minority recovers (s)"),
]


def table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(str(r[key]) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partition", type=float, default=8.0)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--agents", type=int, default=4, help="agents per process")
    parser.add_argument("--before", type=float, default=2.0)
    parser.add_argument("--after", type=float, default=6.0)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for topology in ("cluster", "sentinel"):
        for mode in MODES:
            scenario = Scenario(
                topology,
                mode,
                processes=args.processes,
                agents_per_process=args.agents,
                before=args.before,
                partition=args.partition,
                after=args.after,
            )
            outcome = run(scenario)
            rows.append(outcome.row())
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(outcome.error_kinds.items()))
            errors.append(f"{topology}/{mode}: {kinds or 'none'}")
            for problem in outcome.problems:
                errors.append(f"{topology}/{mode}: PROBLEM {problem}")
    print()
    print(
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.processes * args.agents} agents in "
        f"{args.processes} processes, half on each side; a {args.partition:g} s partition"
    )
    print(table(rows))
    print()
    print("errors by kind:")
    for line in errors:
        print(f"- {line}")


if __name__ == "__main__":
    main()
