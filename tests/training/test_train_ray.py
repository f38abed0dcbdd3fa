"""Ray Train end to end on 2 CPU workers: stages chain, a killed worker recovers, a re-run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from models.checkpoint import load_model
from training.launch import train
from training.mixture.loader import MixtureLoader
from training.plan import load_plan

pytestmark = pytest.mark.slow


def write_plan(tmp_path: Path, data_root: Path, **top) -> Path:
    doc = {"name": "ray-test", "model": {"preset": "tiny"}, "data_root": str(data_root), "checkpoint_every": 5,
           "log_every": 5, **top,
           "stages": [{"name": "first", "steps": 12, "global_batch": 4, "lr": {"max": 1e-3, "warmup": 2},
                       "trainable": ["connector", "adapter", "llm"],
                       "datasets": {"refcoco": {"ratio": 2}, "unnatural-instructions": {"ratio": 1},
                                    "vqa": {"ratio": 1}}},
                      {"name": "second", "steps": 6, "global_batch": 4, "lr": {"max": 5e-4},
                       "datasets": {"coco-captions": {"ratio": 1}, "vqa": {"ratio": 1}}}]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def seen(run_dir: Path) -> dict[tuple[int, int], list[str]]:
    """(stage, step) -> the global batch's keys, from both ranks' records (the last record of a step wins)."""
    per_rank = {}
    for rank in (0, 1):
        for line in (run_dir / f"seen-rank-{rank}.jsonl").read_text().splitlines():
            record = json.loads(line)
            per_rank[(record["stage"], record["step"], rank)] = record["keys"]
    steps = sorted({(s, t) for s, t, _ in per_rank})
    return {st: per_rank[(*st, 0)] + per_rank[(*st, 1)] for st in steps}


def expected(plan_path: Path) -> dict[tuple[int, int], list[str]]:
    plan = load_plan(plan_path)
    loader = MixtureLoader(plan)
    return {(s, step): [loader.key(i) for i in loader.items(s, step)]
            for s, stage in enumerate(plan.stages) for step in range(stage.num_steps)}


def test_two_workers_train_every_stage_on_exactly_the_planned_batches(ray_cluster, data_root, tmp_path):
    plan_path = write_plan(tmp_path, data_root)
    doc = yaml.safe_load(plan_path.read_text())  # stage 2 as CoLLaVO's Dual LoRA: one adapter per data type
    doc["model"]["options"] = {"adapter": "dual"}
    doc["stages"][1].update(mode="per_batch", adapter={"coco-captions": "crayon", "vqa": "vl"})
    plan_path.write_text(yaml.safe_dump(doc))
    result = train(plan_path, workers=2, storage=tmp_path / "runs")
    assert [p.name for p in result.stages] == ["stage-1", "stage-2"] and all(p.is_dir() for p in result.stages)
    assert seen(result.run_dir) == expected(plan_path)  # both ranks together saw the global batches, in order
    final = json.loads((result.stages[1] / "model.json").read_text())
    assert final["realised"] == {"coco-captions": 12, "vqa": 12} and final["base_trained"] == ["llm"]
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["global_step"] for m in lines] == [5, 10, 12, 17, 18]
    assert set(lines[0]["loss_per_task"]) <= {"refer", "identify", "vqa", "text"} and lines[0]["loss"] > 0
    # per_batch: each step of stage 2 came from one dataset, and only that dataset's adapter moved
    stage2 = [keys for (stage, _), keys in seen(result.run_dir).items() if stage == 1]
    assert all(len({k.split("/")[0] for k in keys}) == 1 for keys in stage2)
    before, after = (dict(load_model(p).named_parameters()) for p in result.stages)
    moved = {name.split(".")[-2] for name, p in after.items() if ".lora_" in name and not p.equal(before[name])}
    assert moved == {"crayon", "vl"}  # both datasets had batches, so both adapters trained, each on its own

    # the same run name again: Ray restores the finished run, nothing is trained twice
    again = train(plan_path, workers=2, storage=tmp_path / "runs")
    assert len((again.run_dir / "metrics.jsonl").read_text().splitlines()) == len(lines)


def test_a_worker_killed_mid_stage_restarts_from_the_last_checkpoint_and_sees_the_same_batches(
        ray_cluster, data_root, tmp_path):
    plan_path = write_plan(tmp_path, data_root)
    result = train(plan_path, workers=2, storage=tmp_path / "runs", fail_at=(8, 1), max_failures=1)
    assert (result.run_dir / ".failed-at-8").exists()  # rank 1 really died at global step 8
    records = [json.loads(x) for x in (result.run_dir / "seen-rank-1.jsonl").read_text().splitlines()]
    steps = [(r["stage"], r["step"]) for r in records]
    assert steps.count((0, 5)) == 2 and steps.count((0, 4)) == 1  # steps 6-8 ran again from the step-5 checkpoint
    assert seen(result.run_dir) == expected(plan_path)
    assert all(p.is_dir() for p in result.stages)
