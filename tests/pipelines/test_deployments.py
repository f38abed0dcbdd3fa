"""prefect.yaml against a real `prefect server`: `crayonflow deploy` registers every deployment with
its schedule and trigger, a process worker runs a build, and its completion starts training."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.server import LocalServer, ensure_server, stop_server, using
from tests.pipelines.local import free_port, wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CRAYONFLOW = [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture
def server(tmp_path) -> Iterator[LocalServer]:
    local = LocalServer(tmp_path / "demo-output" / "prefect", port=free_port())
    ensure_server(local)
    yield local
    stop_server(local)


def test_deploy_registers_everything_and_a_finished_build_triggers_training(server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    env = {**os.environ, "CRAYONFLOW_PREFECT_PORT": str(server.port)}
    data = str(tmp_path / "demo-output")
    deployed = subprocess.run([*CRAYONFLOW, "deploy", "--data-dir", data], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    expected = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]

    with using(server), get_client(sync_client=True) as client:
        deployments = {f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in client.read_deployments()}
        assert len(deployments) == len(expected) == 16
        nightly = deployments["build_all/nightly-all"]
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in nightly.schedules] == [
            ("0 2 * * *", "Europe/Berlin", True)]
        assert nightly.parameters == {"overwrite": True}
        assert nightly.pull_steps == [{"prefect.deployments.steps.set_working_directory": {
            "directory": "{{ prefect.variables.repo_root }}"}}]  # resolved per run, not at deploy time
        assert client.read_variable_by_name("repo_root").value == str(REPO)
        builders = [d for name, d in deployments.items() if name.startswith("build-")]
        assert len(builders) == 11 and all([s.active for s in d.schedules] == [False] for d in builders)
        automations = client.read_automations_by_name("after-build__automation_1")
        assert len(automations) == 1 and automations[0].trigger.expect == {"prefect.flow-run.Completed"}

        worker = subprocess.Popen([*CRAYONFLOW, "worker", "--data-dir", data], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            build = run_deployment("build_all/nightly-all", timeout=0, parameters={
                "raw_root": str(tmp_path / "raw"), "out_root": str(tmp_path / "datasets"), "images": 4,
                "builders": ["vqa", "coco-captions"]})
            done = wait_for(lambda: (r := client.read_flow_run(build.id)).state.is_final() and r,
                            "the build_all run on the worker", 240)
        finally:
            worker.terminate()
            log = worker.communicate(timeout=60)[0]
        assert done.state.is_completed(), f"{done.state.message}\nworker log:\n{log[-4000:]}"
        assert (tmp_path / "datasets" / "vqa" / "manifest.json").is_file()

        train = deployments["train_three_stage/after-build"]
        triggered = wait_for(lambda: client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[train.id]))), "the run the trigger creates", 120)
        assert len(triggered) == 1 and triggered[0].state.is_scheduled()
        client.set_flow_run_state(triggered[0].id, Cancelled(), force=True)  # the worker is gone; nothing ran
        assert client.read_flow_run(triggered[0].id).state.is_cancelled()
