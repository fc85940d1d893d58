"""The harness's command line (`python -m cluster`), run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def harness_cli(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RCS_CLUSTER_RUN_DIR=str(run_dir))
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
