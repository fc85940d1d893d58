"""CLI: ``python -m cluster up|down|status [TOPOLOGY]``.

Servers are detached from the CLI process, so ``up`` returns as soon as the topology is
ready and the servers keep running until ``down``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .binaries import TOPOLOGIES, available
from .harness import down, healthy, status, up
from .model import Deployment
from .processes import StartupError, owns


def _describe(dep: Deployment, check: bool) -> str:
    lines = [f"{dep.name} [{dep.topology}]  url: {dep.url}"]
    if dep.client_kwargs:
        lines.append(f"  client_kwargs: {dep.client_kwargs!r}")
    if dep.service_name:
        lines.append(f"  service_name: {dep.service_name}  sentinels: {dep.sentinels}")
    if check:
        reason = healthy(dep)
        lines.append(f"  health: {'ok' if reason is None else reason}")
    for n in dep.nodes:
        alive = "up" if owns(n, dep.workdir) else "DOWN"
        bus = f" bus={n.bus_port}" if n.bus_port else ""
        lines.append(
            f"  {n.name:<10} {n.role:<8} pid={n.pid:<7} port={n.port}{bus} {alive:<4} {n.url}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start (or reuse) topologies")
    p_up.add_argument("topology", nargs="+", choices=[*TOPOLOGIES, "all"])
    p_up.add_argument("--json", action="store_true", help="print deployments as JSON")
    p_down = sub.add_parser("down", help="stop a topology (default: all)")
    p_down.add_argument("name", nargs="?", help="topology or instance directory name")
    p_status = sub.add_parser("status", help="show running topologies")
    p_status.add_argument("name", nargs="?")
    p_status.add_argument("--json", action="store_true")
    p_status.add_argument("--check", action="store_true", help="also run a health check")
    args = parser.parse_args(argv)

    if args.cmd == "up":
        names = list(TOPOLOGIES) if "all" in args.topology else args.topology
        deps = []
        for name in names:
            reason = available(name)
            if reason:
                print(f"{name}: unavailable: {reason}", file=sys.stderr)
                return 2
            t0 = time.monotonic()
            try:
                dep, reused = up(name)
            except StartupError as exc:
                print(f"{name}: failed to start: {exc}", file=sys.stderr)
                return 1
            deps.append(dep)
            if not args.json:
                how = "reused" if reused else f"started in {time.monotonic() - t0:.2f}s"
                print(f"{_describe(dep, check=False)}\n  ({how})")
        if args.json:
            print(json.dumps([d.to_json() for d in deps], indent=2))
        return 0
    if args.cmd == "down":
        stopped = down(args.name)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing"))
        return 0
    deps = status(args.name)
    if args.json:
        print(json.dumps([d.to_json() for d in deps], indent=2))
    elif not deps:
        print("no topologies running")
    for dep in [] if args.json else deps:
        print(_describe(dep, check=args.check))
    return 0


if __name__ == "__main__":
    sys.exit(main())
