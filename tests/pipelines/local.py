"""Small helpers for tests that start real servers and workers as subprocesses."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A port nobody listens on now (a test server's own, so tests never meet a developer's :4200)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float, every: float = 1.0):  # noqa: ANN001, ANN201
    """Poll ``check()`` until it returns something truthy and return that, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

