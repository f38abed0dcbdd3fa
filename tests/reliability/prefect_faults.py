"""Orchestration faults: a part task's transient read error, and a build flow SIGKILLed mid-run.

prefect-transient-retry: inside a part task, one read of a raw input file fails with a transient
errno (EIO, ESTALE, ETIMEDOUT, EAGAIN: what ``transient_io`` retries). Promise: Prefect retries
that task (run_count 2, from the API), the flow completes, and the dataset equals an unfaulted
build. The fault is injected at ``Path.open``, which every reader goes through; the flow, the
retry policy and the builders are the real ones.

prefect-flow-kill: ``build-vqa`` runs in a child process against the API and is SIGKILLed once a
random number of its parts has committed (plus a random delay); the same command is run again.
Promise: the re-run completes, every part the killed run finished (Completed, from the API) is
Cached, and the dataset equals an uninterrupted run's. The killed flow run stays Running on the
server: nothing was left to report its end.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.reliability.prefect_env import (
    child_env,
    dataset_identity,
    flow_runs_writing,
    prefect_api,
    task_runs,
)
from tests.reliability.trials import REPO, Outcome, Scenario

TRANSIENT_CODES = (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN)
RETRY_BUILDERS = ("vqa", "coco-captions", "refcoco")  #: JSON readers and image reads
RETRY_IMAGES, RETRY_RECORDS_PER_PART = 6, 8
KILL_IMAGES, KILL_RECORDS_PER_PART = 24, 6


class FlakyReads:
    """While active, the ``nth`` open of a file under ``root`` made inside a part task fails once
    with ``code``. Records the task run it hit."""

    def __init__(self, root: Path, nth: int, code: int) -> None:
        self.root, self.nth, self.code = str(root), nth, code
        self.hit_task_run = None
        self._opens = 0
        self._lock = threading.Lock()

    @contextmanager
    def active(self) -> Iterator[FlakyReads]:
        from prefect.context import TaskRunContext

        real_open = Path.open
        flaky = self

        def open_(path: Path, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - Path.open's own signature
            context = TaskRunContext.get()
            if context is not None and context.task_run.name.startswith("part-") and str(path).startswith(flaky.root):
                with flaky._lock:
                    flaky._opens += 1
                    fire = flaky._opens == flaky.nth
                    if fire:
                        flaky.hit_task_run = context.task_run.id
                if fire:
                    raise OSError(flaky.code, os.strerror(flaky.code), str(path))
            return real_open(path, *args, **kwargs)

        Path.open = open_
        try:
            yield self
        finally:
            Path.open = real_open


def transient_retry(trials: int, seed: int, workdir: Path, *, current_api: bool = False) -> Outcome:
    from prefect.client.orchestration import get_client

    from pipelines.demo import ensure_sample_world
    from pipelines.flows.build import BUILDERS

    outcome = Outcome("Prefect: transient read error (EIO/ESTALE/ETIMEDOUT/EAGAIN) in a part task")
    rng = random.Random(seed)
    world, _ = ensure_sample_world(workdir / "raw", images=RETRY_IMAGES, seed=seed % 1000)
    with prefect_api(workdir, current_api=current_api):
        expected = {}
        for name in RETRY_BUILDERS:
            state = BUILDERS[name](inputs=[str(world / name)], out=str(workdir / "reference" / name),
                                   records_per_part=RETRY_RECORDS_PER_PART, return_state=True)
            assert state.is_completed(), f"the unfaulted {name} build failed: {state.message}"
            expected[name] = dataset_identity(workdir / "reference" / name)
        for k in range(trials):
            name, code = rng.choice(RETRY_BUILDERS), rng.choice(TRANSIENT_CODES)
            out = workdir / f"trial-{k}" / name
            with FlakyReads(world / name, nth=rng.randint(1, 2), code=code).active() as fault:
                state = BUILDERS[name](inputs=[str(world / name)], out=str(out),
                                       records_per_part=RETRY_RECORDS_PER_PART, return_state=True)
            what = f"{name}, {errno.errorcode[code]} on read {fault.nth} in a part"
            if fault.hit_task_run is None:
                outcome.trial(False, f"{what}: the fault was never injected (no such read)")
                continue
            if not state.is_completed():
                outcome.trial(False, f"{what}: the flow did not complete after the transient error: {state.message}")
                continue
            with get_client(sync_client=True) as client:
                hit = client.read_task_run(fault.hit_task_run)
            if hit.run_count != 2 or not hit.state.is_completed():
                outcome.trial(False, f"{what}: task {hit.name} ran {hit.run_count} times, ended {hit.state.name} "
                                     "(expected one retry, then Completed)")
                continue
            try:
                same = dataset_identity(out) == expected[name]
            except ValueError as e:
                outcome.trial(False, f"{what}: {e}")
                continue
            outcome.trial(same, f"{what}: the retried build differs from the unfaulted one")
    return outcome


CHILD = """
import json, sys
from pipelines.flows.build import build_vqa
build_vqa(**json.loads(sys.argv[1]))
"""


def run_build(parameters: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(parameters)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def committed_parts(out: Path) -> int:
    return sum(1 for _ in (out / ".parts").glob("*/manifest.json"))


def part_states(flow_run_id, *, settled: bool) -> dict[str, str]:  # noqa: ANN001 - a UUID
    """Part name (``part-vqa-3``, without the run's random suffix) -> state name."""
    return {r.name.rsplit("-", 1)[0]: r.state.name for r in task_runs(flow_run_id, settled=settled)
            if r.name.startswith("part-") and r.state is not None}


def cache_record_written(state, storage: Path) -> bool:  # noqa: ANN001 - a Prefect State
    """Whether the result record a Completed state points at is on disk (what a re-run hits)."""
    key = getattr(state.data, "storage_key", None)
    if key is None:
        raise AssertionError(f"a Completed part's state carries no result record: {state.data!r}")
    path = Path(key)
    return (path if path.is_absolute() else storage / path).exists()


def flow_kill(trials: int, seed: int, workdir: Path, *, current_api: bool = False) -> Outcome:
    from pipelines.demo import ensure_sample_world

    outcome = Outcome("Prefect: build flow SIGKILLed mid-run, then re-run")
    rng = random.Random(seed)
    world, _ = ensure_sample_world(workdir / "raw", images=KILL_IMAGES, seed=seed % 1000)
    with prefect_api(workdir, current_api=current_api) as api:
        def parameters(out: Path) -> dict:
            return {"inputs": [str(world / "vqa")], "out": str(out), "records_per_part": KILL_RECORDS_PER_PART}

        reference = workdir / "reference" / "vqa"
        done = run_build(parameters(reference), child_env(api, workdir / "reference" / "home"))
        _, err = done.communicate(timeout=600)
        assert done.returncode == 0, f"the uninterrupted build failed: {err.decode()[-2000:]}"
        expected = dataset_identity(reference)
        parts = len(part_states(flow_runs_writing("build-vqa", reference)[-1].id, settled=True))
        for k in range(trials):
            out, env = workdir / f"trial-{k}" / "vqa", child_env(api, workdir / f"trial-{k}" / "home")
            kill_after, delay = rng.randint(1, max(1, parts - 2)), rng.uniform(0, 0.5)
            what = f"killed after {kill_after} of {parts} parts (+{delay:.2f} s)"
            child = run_build(parameters(out), env)
            deadline = time.monotonic() + 300
            while committed_parts(out) < kill_after and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(delay)
            if child.poll() is not None:
                outcome.trial(False, f"{what}: the build ended (exit {child.returncode}) before the kill; "
                                     f"{child.stderr.read().decode()[-300:]}")
                continue
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            killed_runs = flow_runs_writing("build-vqa", out)
            if len(killed_runs) != 1:
                outcome.trial(False, f"{what}: the API has {len(killed_runs)} runs of the killed build, expected 1")
                continue
            killed = killed_runs[0]
            # Prefect sets Completed before its transaction writes the cache record, so a kill in
            # between leaves a Completed part with nothing to hit: finished = Completed and recorded.
            finished = {r.name.rsplit("-", 1)[0] for r in task_runs(killed.id, settled=False)
                        if r.name.startswith("part-") and r.state is not None and r.state.name == "Completed"
                        and cache_record_written(r.state, workdir / f"trial-{k}" / "home" / "storage")}
            again = run_build(parameters(out), env)
            _, err = again.communicate(timeout=600)
            if again.returncode != 0:
                outcome.trial(False, f"{what}: the re-run failed: {err.decode()[-500:]}")
                continue
            rerun = flow_runs_writing("build-vqa", out)[-1]
            states = part_states(rerun.id, settled=True)
            not_cached = sorted(n for n in finished if states.get(n) != "Cached")
            try:
                same = dataset_identity(out) == expected
            except ValueError as e:
                outcome.trial(False, f"{what}: {e}")
                continue
            if not_cached:
                outcome.trial(False, f"{what}: parts finished before the kill were not Cached on re-run: "
                                     f"{[(n, states.get(n)) for n in not_cached]}")
            elif set(states.values()) - {"Cached", "Completed"}:
                outcome.trial(False, f"{what}: re-run part states {states}")
            else:
                outcome.trial(same, f"{what}: the re-run's dataset differs from an uninterrupted build")
    return outcome


SCENARIOS = [
    Scenario("prefect-transient-retry", transient_retry, full_trials=10, ci_trials=2),
    Scenario("prefect-flow-kill", flow_kill, full_trials=10, ci_trials=1),
]
