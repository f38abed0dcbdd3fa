"""The project's own local Prefect server: SQLite under ``<data>/prefect`` (its PREFECT_HOME), on 127.0.0.1.

Never a user's global ``~/.prefect`` and never Prefect Cloud: every setting that decides where
runs, results and caches go is pinned here, so ``make demo`` and ``make ui`` share one server
and one cache, and nothing else does. The server itself is ``prefect server start`` in its own
session, its output in ``server.log`` and its pid in PREFECT_HOME's ``server.pid``, which
``prefect server stop`` reads. Not ``--background``: that mode hands the server pipes nobody
reads once the starting command exits, so its logs are lost and a write to them fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = int(os.environ.get("CRAYONFLOW_PREFECT_PORT", "4200"))


class ServerError(RuntimeError):
    """The local server did not come up; the message names the port and the log to read."""


@dataclass(frozen=True)
class LocalServer:
    home: Path  #: PREFECT_HOME: prefect.db (SQLite), storage/ (results and caches), server.log
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings a client, worker or the server itself needs to use this server and nothing else."""
        home = self.home.resolve()
        return {
            "PREFECT_HOME": str(home),
            "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,  # else the UI asks port 4200 for its runs
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "storage"),
            "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLOUD_API_URL": "http://127.0.0.1:9/disabled",  # no accidental Cloud calls
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=timeout) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False


def prefect_command(server: LocalServer, *args: str, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    """``prefect ARGS`` with this server's settings (the CLI of the venv we run in)."""
    env = {**os.environ, **server.env()}
    return subprocess.run([sys.executable, "-m", "prefect", *args], env=env, **kwargs)


def exec_prefect(server: LocalServer, *args: str) -> None:
    """Become ``prefect ARGS`` (for long-running commands: Ctrl-C and SIGTERM reach prefect itself)."""
    os.execve(sys.executable, [sys.executable, "-m", "prefect", *args], {**os.environ, **server.env()})


def ensure_server(server: LocalServer, *, wait_s: float = 90.0) -> bool:
    """Start the server in the background unless it already answers; wait until it is healthy.

    Returns whether it was started now. A port taken by something that is not answering as a
    Prefect server fails with the port and the server log named."""
    if server.healthy():
        return False
    server.home.mkdir(parents=True, exist_ok=True)
    (server.home / "server.pid").unlink(missing_ok=True)  # a stale pid file from a killed server
    log = server.home / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", server.host,
                                    "--port", str(server.port)],
                                   env={**os.environ, **server.env(), "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"},
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # outlives this command, as make demo promises
    (server.home / "server.pid").write_text(str(process.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and process.poll() is None:
        if server.healthy():
            return True
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    state = f"exited {process.returncode}" if process.poll() is not None else f"not healthy in {wait_s:.0f} s"
    raise ServerError(f"the Prefect server on {server.ui_url} did not come up (`prefect server start` {state}); "
                      f"its log is {log}:\n{tail}")


def stop_server(server: LocalServer) -> None:
    prefect_command(server, "server", "stop", capture_output=True)


@contextmanager
def using(server: LocalServer) -> Iterator[None]:
    """Point this process's Prefect client at ``server``, and child processes (Ray, workers) too."""
    env = server.env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # first: a first import of prefect reads its root settings from here

    import prefect.settings
    from prefect.settings import temporary_settings

    updates = {getattr(prefect.settings, k): v for k, v in env.items() if k.startswith("PREFECT_")}
    try:
        with temporary_settings(updates=updates):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
