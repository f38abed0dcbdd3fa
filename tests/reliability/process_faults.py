"""Real process faults for the reliability scenarios: a child under RLIMIT_FSIZE, a SIGKILL when
a condition holds. No mocks: the child is a real interpreter doing real I/O."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.reliability.trials import REPO

POLL_S = 0.002  #: how often kill_when looks at the child's progress


def python_child(code: str, *args: str, fsize_limit: int | None = None) -> subprocess.Popen[str]:
    """``python -c code args...`` from the repository root, optionally with ``fsize_limit``."""
    return spawn([sys.executable, "-c", code, *args], fsize_limit=fsize_limit)


def spawn(argv: Sequence[str], *, fsize_limit: int | None = None) -> subprocess.Popen[str]:
    """Start ``argv`` with stdout and stderr in one pipe. With ``fsize_limit`` no file the child
    writes may grow past that many bytes, and SIGXFSZ is ignored so that the write fails with
    EFBIG instead: what a full disk looks like to a program (ENOSPC), file by file."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.Popen(list(argv), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=limit_files if fsize_limit is not None else None,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # no .pyc writes under the limit


def kill_when(child: subprocess.Popen[str], ready: Callable[[], bool], delay_s: float, *,
              timeout_s: float = 120) -> bool:
    """SIGKILL ``child`` ``delay_s`` after ``ready()`` first holds. True if the kill struck a running
    child; False if it had exited by then (its output is still read, so the pipe never blocks it)."""
    deadline = time.monotonic() + timeout_s
    while child.poll() is None and not ready():
        if time.monotonic() > deadline:
            child.kill()
            child.communicate()
            raise TimeoutError(f"{child.args!r}: the kill point never came within {timeout_s:.0f} s")
        time.sleep(POLL_S)
    time.sleep(delay_s)
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    return child.returncode == -signal.SIGKILL

