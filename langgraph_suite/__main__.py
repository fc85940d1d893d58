"""``python -m langgraph_suite [--savers ours|memory|all] [pytest args]``.

Fetches the tests of the installed langgraph version once (``pip download`` of its
sdist, kept with the extracted tests under ``.cache/langgraph-tests/``, so a second
run needs no network), then runs :data:`FILES` with pytest from that folder, two
xdist workers by default (``-n`` to change). ``--savers ours`` (the default) runs
only the tests parametrized with our savers, ``memory`` only those on LangGraph's
``InMemorySaver`` (the reference), ``all`` every parametrization LangGraph has
without Docker, plus ours. Exit status: pytest's.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LANGGRAPH_TESTS_CACHE", ROOT / ".cache" / "langgraph-tests"))
FILES = (
    "test_pregel.py",
    "test_pregel_async.py",
    "test_large_cases.py",
    "test_large_cases_async.py",
    "test_time_travel.py",
    "test_time_travel_async.py",
    "test_subgraph_persistence.py",
    "test_subgraph_persistence_async.py",
    "test_interruption.py",
    "test_interrupt_state.py",
    "test_strict_resume.py",
    "test_checkpoint_migration.py",
    "test_delta_channel_*.py",
)
"""LangGraph's test files that exercise a checkpointer most (globs in its tests/)."""
KEPT = ("tests/", "pyproject.toml")
"""What is extracted from the sdist: its tests and their pytest configuration (not
its sources: the installed langgraph is the one under test)."""


def sdist(version: str, package: str = "langgraph") -> Path:
    """The sdist of ``package==version``, downloaded into the cache once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")  # how an sdist file names its project
    found = sorted(CACHE.glob(f"{stem}-{version}.tar.gz"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"{package}=={version}",
                "--dest",
                tmp,
            ],
            check=True,
        )
        (archive,) = Path(tmp).glob(f"{stem}-*.tar.gz")
        target = CACHE / archive.name
        shutil.move(str(archive), target)
    return target


def extract(archive: Path, version: str) -> Path:
    """The sdist's tests/ and pyproject.toml, extracted once beside it."""
    target = CACHE / archive.name.removesuffix(".tar.gz")
    done = target / ".extracted"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            _, _, inner = member.name.partition("/")
            if not inner.startswith(KEPT) or ".." in Path(inner).parts:
                continue
            if not (member.isfile() or member.isdir()):
                continue
            path = target / inner
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            path.write_bytes(source.read())
    done.write_text(version + "\n")
    return target


def test_files(tests: Path) -> list[str]:
    """The paths of :data:`FILES` present in this version's tests/."""
    found: list[str] = []
    for pattern in FILES:
        found += sorted(f"tests/{p.name}" for p in tests.glob(pattern))
    return found


def command(suite: Path, args: Sequence[str]) -> list[str]:
    """pytest on :data:`FILES`, or on the tests named in ``args`` (``tests/...``)."""
    extra = list(args)
    named = [a for a in extra if a.startswith("tests/")]
    if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in extra):
        extra = ["-n", os.environ.get("LANGGRAPH_SUITE_WORKERS", "2"), *extra]
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "langgraph_suite.plugin",
        "-p",
        "no:asyncio",  # LangGraph's tests run on anyio's plugin alone
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(suite),
        "-q",
        "-rfE",
        *([] if named else test_files(suite / "tests")),
        *extra,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    version = importlib.metadata.version("langgraph")
    suite = extract(sdist(version), version)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["NO_DOCKER"] = "true"  # LangGraph's Postgres and Redis fixtures need its containers
    args = list(sys.argv[1:] if argv is None else argv)
    print(f"LangGraph {version}'s tests from {suite}", flush=True)
    return subprocess.run(command(suite, args), cwd=suite, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
