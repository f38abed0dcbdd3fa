"""`crayonflow demo` as a user runs it: its own Prefect server on SQLite, the demo flow with its
subflows (builds, segmentation, training on 2 Ray workers, evaluation), then the UI in headless
Chromium showing the run, its subflows and the lineage and training artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import webdataset as wds
import yaml

from pipelines.demo import DEMO_PLAN
from pipelines.flows.build import ALL
from pipelines.server import LocalServer, stop_server
from tests.pipelines.local import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# Screenshots land here (git-ignored), for a person or a CI job to keep.
ARTIFACTS = Path(os.environ.get("CRAYONFLOW_TEST_ARTIFACTS", REPO / "test-artifacts"))


@dataclass(frozen=True)
class Demo:
    data: Path
    server: LocalServer
    output: str
    env: dict

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--data-dir", str(self.data), *args],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    root = tmp_path_factory.mktemp("demo")
    plan = yaml.safe_load(DEMO_PLAN.read_text())
    for stage in plan["stages"]:  # the shipped plan, shortened
        stage.update(steps=6, lr={**stage["lr"], "warmup": 2})
    plan.update(checkpoint_every=3, log_every=3)
    (root / "short.yaml").write_text(yaml.safe_dump(plan))
    port = free_port()
    env = {**os.environ, "CRAYONFLOW_PREFECT_PORT": str(port), "COLUMNS": "200"}
    d = Demo(root / "demo-output", LocalServer(root / "demo-output" / "prefect", port=port), "", env)
    try:
        done = d.run("--images", "12", "--val-scenes", "8", "--plan", str(root / "short.yaml"))
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
        yield Demo(d.data, d.server, done.stdout, env)
    finally:
        stop_server(d.server)


def test_the_demo_builds_trains_and_evaluates_and_says_what_to_open(demo):
    out = demo.output
    assert out.count("built, verified") == len(ALL), out
    assert "trained 3 stages on 2 Ray workers" in out and "held-out (val) scores" in out
    assert "gap [95% CI]" in out and "answer_type=yes/no" in out and "looks at its picture for:" in out
    assert f"open {demo.server.ui_url}/runs/flow-run/" in out
    for name in ALL:
        root = demo.data / "datasets" / name
        manifest = json.loads((root / "manifest.json").read_text())
        urls = sorted(str(p) for p in root.glob("*.tar"))
        assert sum(1 for _ in wds.WebDataset(urls, shardshuffle=False)) == manifest["counts"]["written"], name
    run = demo.data / "runs" / "tiny-demo"
    assert all((run / f"stage-{k}" / "model.json").is_file() for k in (1, 2, 3))
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("trained", "untrained"):
        report = json.loads((run / f"eval-val-{name}.json").read_text())
        assert {s["task"] for s in report["scores"]} >= {"refer", "vqa", "caption"}
        blind = [s["blind"] is not None and s["gap_low"] <= s["gap_high"] for s in report["scores"]]
        assert all(blind) if name == "trained" else not any(blind)  # the control is asked of the trained model
        refer = next(s for s in report["scores"] if s["task"] == "refer" and s["family"] is None)
        assert refer["n"] >= 12  # 9 val pictures with the extra scenes, not 1
    assert (demo.server.home / "prefect.db").is_file()  # its own SQLite, under the data folder


def test_the_ui_shows_the_demo_run_its_subflows_and_the_lineage_and_training_artifacts(demo):
    from tests.pipelines.prefect_ui import CHROMEDRIVER, CHROMIUM, PrefectUI

    if not all(os.access(b, os.X_OK) for b in (CHROMIUM, CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} or {CHROMEDRIVER} missing in CI: .ci/run installs them (.ci/install-chromium)")
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian chromium, chromium-driver): .ci/install-chromium")
    with PrefectUI(demo.server.ui_url, timeout=60) as ui:
        ui.open_flow_run(flow="demo")
        subflows = {r.flow for r in ui.subflow_runs(expect_flows=("build_all", "train_three_stage", "evaluate"))}
        assert subflows == {"build_all", "train_three_stage", "evaluate"}
        ui.screenshot(ARTIFACTS / "prefect-ui" / "demo-run.png")
        keys = ui.artifact_keys(expect=(*(f"dataset-{n}" for n in ALL), *(f"lineage-{n}" for n in ALL),
                                        "training-mixture-tiny-demo", "training-metrics-tiny-demo",
                                        "training-loss-tiny-demo", "eval-tiny-demo-val"))
        assert "build-progress-all" in keys and "training-progress" in keys
        card = ui.open_artifact("lineage-vqa")
        assert "crayonflow://datasets/vqa/" in card and "Upstream inputs" in card and "training run tiny-demo" in card
        ui.screenshot(ARTIFACTS / "prefect-ui" / "lineage-vqa.png")
        mixture = ui.open_artifact("training-mixture-tiny-demo")
        assert mixture.splitlines()[0].split("\t")[:4] == ["stage", "dataset", "target", "realised"]
        ui.open_artifact("training-loss-tiny-demo")
        ui.wait_for_images(1)
        ui.screenshot(ARTIFACTS / "prefect-ui" / "training-loss.png")
    assert (ARTIFACTS / "prefect-ui" / "demo-run.png").stat().st_size > 10_000


def test_a_second_demo_run_reuses_every_dataset(demo):
    again = demo.run("--images", "12", "--val-scenes", "8", "--no-train")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert again.stdout.count("reused, verified") == len(ALL), again.stdout
