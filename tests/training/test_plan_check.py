"""``crayonflow plan check`` and train's pre-check: each entry built or not, its samples of the
split and tasks, the command that makes what is missing; exit 1 while anything is."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from datasets_builders.store import ShardDataset
from training.cli import plan_app
from training.launch import train
from training.plan import PlanError, load_plan
from training.plan_check import check_plan, missing_lines


def write_plan(path: Path, datasets: dict) -> Path:
    path.write_text(yaml.safe_dump({"name": "check", "model": {"preset": "tiny"}, "stages": [
        {"name": "only", "steps": 2, "global_batch": 2, "lr": {"max": 1e-3}, "datasets": datasets}]}))
    return path


def test_each_entry_is_counted_on_its_split_and_tasks_and_what_is_missing_says_how_to_build_it(data_root, tmp_path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", {
        "refcoco": {"ratio": 1, "tasks": ["refer"]}, "vqa": {"ratio": 1, "split": "val"},
        "grounding": {"ratio": 1, "path": "refcoco", "tasks": ["grounding"]}, "okvqa": {"ratio": 1},
        "vqav2": {"ratio": 1}}))
    statuses = {s.entry: s for s in check_plan(plan, data_root)}
    refer_rows = sum(1 for s in ShardDataset(data_root / "refcoco").samples() if (s.task, s.split) == ("refer", "train"))
    assert statuses["refcoco"].ok and statuses["refcoco"].samples == refer_rows > 0
    assert statuses["refcoco"].built.startswith("refcoco v")
    assert statuses["vqa"].ok and statuses["vqa"].samples > 0
    assert statuses["grounding"].problem == "built, but no train tasks grounding"
    assert statuses["okvqa"].problem == "not built" and statuses["okvqa"].samples == 0
    lines = missing_lines(statuses.values(), "raw")
    assert f"  make it: crayonflow build okvqa --input raw/okvqa --out {data_root / 'okvqa'}" in lines
    assert f"  make it: crayonflow build vqa --input raw/vqav2 --out {data_root / 'vqav2'}" in lines
    assert not any("refcoco --input" in line for line in lines)  # built: no command, only the task problem


def test_the_command_exits_1_while_anything_is_missing_and_0_when_all_is_built(data_root, tmp_path):
    app = typer.Typer()
    app.add_typer(plan_app, name="plan")
    runner = CliRunner()
    bad = runner.invoke(app, ["plan", "check", str(write_plan(tmp_path / "bad.yaml", {"okvqa": {"ratio": 1}})),
                              "--data", str(data_root)], terminal_width=250)
    assert bad.exit_code == 1 and "not built" in bad.output and "crayonflow build okvqa" in bad.output
    good = runner.invoke(app, ["plan", "check", str(write_plan(tmp_path / "good.yaml", {"vqa": {"ratio": 1}})),
                               "--data", str(data_root)], terminal_width=250)
    assert good.exit_code == 0 and "all 1 entries are built" in good.output, good.output


def test_train_refuses_before_any_worker_starts_with_the_same_list(data_root, tmp_path):
    with pytest.raises(PlanError) as e:
        train(write_plan(tmp_path / "p.yaml", {"vqa": {"ratio": 1}, "gqa": {"ratio": 1}}), data_root=data_root,
              storage=tmp_path / "runs")
    assert "only / gqa (train)" in str(e.value) and "crayonflow build gqa" in str(e.value)
    assert not (tmp_path / "runs").exists()
