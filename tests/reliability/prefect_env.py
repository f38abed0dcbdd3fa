"""A Prefect API for the reliability scenarios, and what they read back from it.

Under pytest a scenario runs on the session's test server (the ``prefect_server`` fixture; the
test passes ``current_api=True``); under ``make chaos`` it brings its own: the project's
LocalServer on a free port, with PREFECT_HOME in the scenario's temp folder, never ~/.prefect.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from tests.pipelines.local import free_port, wait_for


@contextmanager
def prefect_api(workdir: Path, *, current_api: bool) -> Iterator[str]:
    """This process's client pointed at a Prefect API; yields its URL (for child processes)."""
    if current_api:
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()
        return
    from pipelines.server import LocalServer, ensure_server, stop_server, using

    server = LocalServer(workdir / "prefect-server", port=free_port())
    ensure_server(server)
    try:
        with using(server):
            yield server.api_url
            _flush_events()
    finally:
        stop_server(server)


def _flush_events() -> None:
    """Send this process's queued events while their server is still up: otherwise Prefect's
    at-exit drain retries each against the stopped server for a minute (several minutes per run)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)


def child_env(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a flow run in a child process: ``api_url``, and results and cache records
    under ``home`` (so two runs of one trial share them, and nothing else does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(home), PREFECT_PROFILES_PATH=str(home / "profiles.toml"),
               PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"), PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(home / "storage"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_CLOUD_API_URL="http://127.0.0.1:9/disabled",
               RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def task_runs(flow_run_id, *, settled: bool = True) -> list:  # noqa: ANN001 - a UUID
    """The task runs of one flow run, from the API. ``settled``: wait until every one is final
    (states arrive as events after the flow returns); a killed run's are read as they are."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def read() -> list:
        with get_client(sync_client=True) as client:
            return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    if not settled:
        return read()
    return wait_for(lambda: (runs := read()) and all(r.state is not None and r.state.is_final() for r in runs) and runs,
                    f"the task runs of flow run {flow_run_id} to reach final states", 60, every=0.5)


def flow_runs_writing(flow_name: str, out: Path) -> list:
    """The runs of ``flow_name`` whose ``out`` parameter is ``out``, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200)
    return [r for r in runs if r.parameters.get("out") == str(out)]


def dataset_identity(root: Path) -> tuple:
    """What must be equal between two builds of the same data: fingerprint, shard and index
    checksums, counts; and that every byte verifies. Raises if the folder is not a dataset."""
    from datasets_builders.store import load_manifest, verify_dataset

    manifest = load_manifest(root)
    if manifest is None:
        raise ValueError(f"{root}: no committed dataset")
    report = verify_dataset(root)
    if not report.ok:
        raise ValueError(f"{root}: verify found {[str(p) for p in report.problems][:3]}")
    shards = hashlib.sha256(b"".join((root / s.name).read_bytes() for s in manifest.shards)).hexdigest()
    return (manifest.fingerprint, manifest.content_xxh3, shards, {k: asdict(v) for k, v in manifest.index.items()},
            asdict(manifest.counts))
