"""The demo builds every builder's dataset (and crayon shards of segmented pictures) from a sample world,
verifies them, and reuses them."""

from __future__ import annotations

import json

import pytest
import webdataset as wds
import yaml
from typer.testing import CliRunner

from datasets_builders.registry import DERIVED, SOURCES
from pipelines.cli import app
from pipelines.demo import DEMO_PLAN, SEGMENTED, run_demo

DATASETS = [*SOURCES, *DERIVED, SEGMENTED]


def test_demo_builds_every_dataset_verified_and_an_identical_rerun_reuses_all(ray_cluster, tmp_path):
    first = run_demo(tmp_path, images=12, seed=3)
    assert first.ok and not first.world_reused
    assert [d.name for d in first.datasets] == DATASETS
    for d in first.datasets:
        counts = d.build.manifest.counts
        planted = 1 if d.name in ("grit", "image-text") else 0  # the world's dead download links
        assert not d.build.reused and counts.written > 0 and counts.records_rejected == planted, d.name
        urls = [str(p) for p in sorted(d.build.root.glob("*.tar"))]
        assert sum(1 for _ in wds.WebDataset(urls, shardshuffle=False)) == counts.written
    again = run_demo(tmp_path, images=12, seed=3)
    assert again.world_reused and all(d.build.reused for d in again.datasets)
    changed = run_demo(tmp_path, images=8, seed=3)  # other parameters replace the old builds
    assert changed.ok and not changed.world_reused
    assert all(not d.build.reused and d.build.manifest.counts.read < f.build.manifest.counts.read
               for d, f in zip(changed.datasets, first.datasets))


def test_demo_command_reports_every_dataset(ray_cluster, tmp_path):
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path), "--images", "6", "--no-train"],
                                terminal_width=300)
    assert result.exit_code == 0, result.output
    assert result.output.count("verified") == len(DATASETS)
    for name in DATASETS:
        assert f" {name} " in result.output


@pytest.mark.slow
def test_the_demo_trains_three_stages_on_two_ray_workers_and_scores_trained_against_untrained(ray_cluster, tmp_path):
    plan = yaml.safe_load(DEMO_PLAN.read_text())
    for stage in plan["stages"]:  # the shipped plan, shortened
        stage.update(steps=6, lr={**stage["lr"], "warmup": 2})
    plan.update(checkpoint_every=3, log_every=3)
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(plan))
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path), "--images", "12", "--plan", str(short)],
                                terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "trained 3 stages on 2 Ray workers" in result.output and "held-out (val) scores" in result.output
    run = tmp_path / "runs" / "tiny-demo"
    assert all((run / f"stage-{k}" / "model.json").is_file() for k in (1, 2, 3))
    for name in ("trained", "untrained"):
        report = json.loads((run / f"eval-val-{name}.json").read_text())
        assert {s["task"] for s in report["scores"]} >= {"refer", "vqa", "caption"}
