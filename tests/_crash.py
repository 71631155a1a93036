"""Crash-and-resume helpers: SIGKILL a real training subprocess between two checkpoints, and count the optimizer
steps a (resumed) run actually executes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook

REPO = Path(__file__).resolve().parents[1]

# The child counts optimizer steps with a global post-step hook. When step ``at`` has been applied (after the
# checkpoint of an earlier step, before the next one), it writes the marker and waits: the parent kills it with
# SIGKILL there, so nothing after that step (no checkpoint, no finally/atexit) runs.
_CHILD = """
import sys, time
from pathlib import Path
from torch.optim.optimizer import register_optimizer_step_post_hook
marker, at = Path(sys.argv[1]), int(sys.argv[2])
n = 0
def _hook(opt, args, kwargs):
    global n
    n += 1
    if n == at:
        marker.write_text(str(n))
        time.sleep(3600)
register_optimizer_step_post_hook(_hook)
exec(compile(sys.argv[3], "<payload>", "exec"))
raise SystemExit("the payload finished before optimizer step %d" % at)
"""


def kill_during_step(payload: str, at: int, workdir: Path, timeout: float = 300.0) -> None:
    """Run ``payload`` (Python source) in a fresh interpreter and SIGKILL it once its ``at``-th optimizer step
    has been applied. ``timeout`` is a liveness bound (generous), not a speed requirement."""
    marker = workdir / f"at-step-{at}"
    marker.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(marker), str(at), payload],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"child exited ({proc.returncode}) before step {at}:\n{err[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"child did not reach optimizer step {at} within {timeout} s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@contextlib.contextmanager
def count_optimizer_steps():
    """Counts every ``Optimizer.step`` call made inside the block: yields a one-element list."""
    n = [0]

    def hook(opt, args, kwargs):
        n[0] += 1

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield n
    finally:
        handle.remove()
