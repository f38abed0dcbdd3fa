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


def api(path: str, body: dict | None = None, *, limit: int = 200):  # noqa: ANN201 - the decoded JSON
    """POST ``<PREFECT_API_URL><path>`` (a ``/…/filter`` endpoint) with ``body`` plus explicit
    offset and limit. The 3.8.8 clients' ``read_*`` calls send nulls for unset fields, which the
    server under our fastapi pin refuses (422), so tests ask the API directly."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(f"{PREFECT_API_URL.value()}{path}", json={"offset": 0, "limit": limit, **(body or {})},
                          timeout=30)
    response.raise_for_status()
    return response.json()
