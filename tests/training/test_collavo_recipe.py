"""training/recipes/collavo.yaml: CoLLaVO's CPT then CIT (Dual LoRA per batch) reads datasets the
project builds, and trains on them (samples cut to a few batches)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datasets_builders.build import build_dataset
from datasets_builders.sample_world.world import write_sample_world
from training.launch import train
from training.plan import load_plan
from training.plan_check import check_plan, missing_lines

RECIPE = Path(__file__).resolve().parents[2] / "training" / "recipes" / "collavo.yaml"

pytestmark = pytest.mark.slow


def test_the_collavo_recipe_checks_clean_and_trains_both_steps(ray_cluster, tmp_path):
    write_sample_world(tmp_path / "raw", images=12, seed=0)
    data = tmp_path / "datasets"
    for name in ("coco-panoptic", "llava"):
        build_dataset(name, tmp_path / "raw" / name, data / name)
    plan = load_plan(RECIPE)
    assert [s.name for s in plan.stages] == ["cpt", "cit"]
    assert plan.stages[0].trainable == ("crayon",) and plan.stages[1].adapter == {"coco-panoptic": "crayon",
                                                                                  "llava": "vl"}
    assert missing_lines(check_plan(plan, data)) == []
    doc = yaml.safe_load(RECIPE.read_text())
    for stage in doc["stages"]:
        stage.update(samples=8, global_batch=4)
    small = tmp_path / "collavo-small.yaml"
    small.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = train(small, workers=2, storage=tmp_path / "runs", data_root=data)
    assert [p.name for p in result.stages] == ["stage-1", "stage-2"] and result.metrics["global_step"] == 4
