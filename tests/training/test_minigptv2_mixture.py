"""MiniGPT-v2's released stage-3 mixture on the sample world: every one of its 22 entries resolves
to a built dataset with samples of its split and tasks (``plan check``), and a tiny model trains a
few steps of it through Ray with the entries, ratios and per-batch mode as released."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datasets_builders.build import build_dataset
from datasets_builders.registry import SOURCES
from datasets_builders.sample_world.world import write_sample_world
from pipelines.demo import MULTIROUND_INPUTS
from training.launch import train
from training.plan import load_plan
from training.plan_check import BUILDER_OF, check_plan, missing_lines

RECIPE = Path(__file__).resolve().parents[2] / "training" / "recipes" / "minigptv2.yaml"
RAW_OF = {"refcoco-plus": "refcoco", "refcocog": "refcoco"}  #: the world ships one REFER release for all three

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stage3(tmp_path_factory) -> tuple[Path, Path]:
    """The stage-3 folders built from a 12-scene world, and the recipe cut to stage 3."""
    root = tmp_path_factory.mktemp("minigptv2")
    write_sample_world(root / "raw", images=12, seed=0)
    data = root / "datasets"
    for name in SOURCES:
        build_dataset(name, root / "raw" / name, data / name)
    recipe = yaml.safe_load(RECIPE.read_text())
    (stage,) = [s for s in recipe["stages"] if s["name"].startswith("stage-3")]
    folders = {use.get("path", name) for name, use in stage["datasets"].items()}
    for folder in sorted(folders - set(SOURCES)):
        builder = BUILDER_OF.get(folder, folder)
        if builder == "multiround":
            build_dataset("multiround", [data / n for n in MULTIROUND_INPUTS], data / folder)
        else:
            build_dataset(builder, root / "raw" / RAW_OF.get(folder, builder), data / folder)
    recipe["stages"] = [stage]
    plan = root / "stage3.yaml"
    plan.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return plan, data


def test_all_22_stage3_entries_resolve_to_built_datasets_with_their_samples(stage3):
    plan_file, data = stage3
    statuses = check_plan(load_plan(plan_file), data)
    assert len(statuses) == 22
    assert missing_lines(statuses) == []
    assert all(s.samples > 0 for s in statuses)


def test_a_tiny_model_trains_a_few_steps_of_the_stage3_mixture(ray_cluster, stage3, tmp_path):
    plan_file, data = stage3
    recipe = yaml.safe_load(plan_file.read_text())
    recipe["model"] = {"preset": "tiny"}
    (stage,) = recipe["stages"]
    stage.update(steps=3, global_batch=4, max_text_tokens=256, init="previous",
                 lr={"max": 1e-3, "min": 1e-5, "warmup": 1, "start": 1e-5})
    tiny = tmp_path / "tiny-stage3.yaml"
    tiny.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = train(tiny, workers=2, storage=tmp_path / "runs", data_root=data)
    assert result.metrics["global_step"] == 3 and result.metrics["loss"] == result.metrics["loss"]  # not NaN
