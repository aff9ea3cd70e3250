"""Kill a training subprocess at a known step: start it, wait for the ``hanging`` marker it writes there, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def kill_when_hanging(cmd: list[str], env: dict, *, cwd: Path, marker: Path, timeout_s: float = 240) -> None:
    """Run ``cmd`` until it creates ``marker`` (its ``--hang-at`` step), then kill it hard: no cleanup runs."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout_s
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.time() < deadline, "training never reached the step to kill at"
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
