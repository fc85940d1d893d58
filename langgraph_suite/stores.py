"""``python -m langgraph_suite.stores [pytest args]``: LangGraph's own store tests on ours.

Fetches the sdist of the installed langgraph-checkpoint once (as ``python -m
langgraph_suite`` fetches langgraph's, into the same cache), then runs its
``tests/test_store.py`` with ``langgraph_suite.store_plugin`` once per topology in
:data:`TOPOLOGIES`: the plugin makes the name ``InMemoryStore`` in that module build a
:class:`~redis_cluster_saver.store.RedisClusterStore` on a server the harness starts.
Exit status: the first failing run's, else 0.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Sequence

from langgraph_suite.__main__ import ROOT, extract, sdist

TOPOLOGIES = ("standalone", "cluster", "plain")
FILES = ("tests/test_store.py",)


def main(argv: Sequence[str] | None = None) -> int:
    version = importlib.metadata.version("langgraph-checkpoint")
    suite = extract(sdist(version, "langgraph-checkpoint"), version)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    args = list(sys.argv[1:] if argv is None else argv)
    status = 0
    for topology in TOPOLOGIES:
        print(f"langgraph-checkpoint {version}'s store tests on {topology}", flush=True)
        env["RCS_STORE_TOPOLOGY"] = topology
        command = [
            sys.executable, "-m", "pytest",
            "-p", "langgraph_suite.store_plugin",
            "-p", "no:cacheprovider",
            "--rootdir", str(suite),
            "-q", "-rfE",
            *FILES,
            *args,
        ]  # fmt: skip
        done = subprocess.run(command, cwd=suite, env=env).returncode
        status = status or done
    return status


if __name__ == "__main__":
    sys.exit(main())
