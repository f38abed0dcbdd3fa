"""Stage plans: the shipped recipes parse and say what the spec says; bad plans fail naming their key path."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.grounded_vlm import PARTS
from training.mixture.schedule import BatchSchedule
from tests.datasets_builders.test_builders_on_sample_world import TASKS
from training.plan import DatasetUse, Plan, PlanError, load_plan, parse_plan

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"
MINIGPTV2 = RECIPES / "minigptv2.yaml"
TINY_DEMO = RECIPES / "tiny-demo.yaml"

# minigptv2-data-spec.md 9.3: the released stage-3 mixture, our dataset key -> (released builder,
# batch per GPU, sample_ratio).
RELEASED_STAGE3 = {
    "multitask-conversation": ("multitask_conversation", 2, 50),
    "llava-conversation": ("llava_conversation", 2, 30),
    "unnatural-instructions": ("unnatural_instruction", 1, 10),
    "visual-genome": ("refvg", 6, 40),
    "llava-detail": ("llava_detail", 4, 20),
    "llava-reason": ("llava_reason", 4, 80),
    "flickr-grounded-caption": ("flickr_grounded_caption", 2, 80),
    "flickr-caption-to-phrase": ("flickr_CaptionToPhrase", 2, 80),
    "flickr-object-to-phrase": ("flickr_ObjectToPhrase", 2, 80),
    "coco-captions": ("coco_caption", 6, 10),
    "textcaps": ("textcaps_caption", 6, 30),
    "refcoco": ("refcoco", 6, 25),
    "refcoco-plus": ("refcocop", 6, 25),
    "refcocog": ("refcocog", 6, 25),
    "invrefcoco": ("invrefcoco", 6, 10),
    "invrefcoco-plus": ("invrefcocop", 6, 10),
    "invrefcocog": ("invrefcocog", 6, 10),
    "vqav2": ("coco_vqa", 6, 15),
    "okvqa": ("ok_vqa", 6, 8),
    "aokvqa": ("aok_vqa", 6, 12),
    "gqa": ("gqa", 6, 50),
    "ocrvqa": ("ocrvqa", 6, 30),
}

# Stage-3 entries that share a folder: key -> (folder, tasks).
SHARED_FOLDERS = {
    "llava-conversation": ("llava", ("llava-conversation",)),
    "llava-detail": ("llava", ("llava-detail",)),
    "llava-reason": ("llava", ("llava-reason",)),
    "flickr-grounded-caption": ("flickr30k-entities", ("grounding",)),
    "flickr-caption-to-phrase": ("flickr30k-entities", ("detection-caption",)),
    "flickr-object-to-phrase": ("flickr30k-entities", ("detection-phrase",)),
    "invrefcoco": ("refcoco", ("identify",)),
    "invrefcoco-plus": ("refcoco-plus", ("identify",)),
    "invrefcocog": ("refcocog", ("identify",)),
}

# the tasks each builder's dataset holds (refcoco-plus / refcocog: the refcoco builder)
BUILDER_TASKS = {**TASKS, "refcoco-plus": TASKS["refcoco"], "refcocog": TASKS["refcoco"]}

WEAKLY_LABELLED = {"grit", "laion", "cc3m", "sbu"}
NO_RATIOS_NOTE = "after the paper's intent; no ratios were published (issue #430)"


def _minimal() -> dict[str, Any]:
    return {
        "name": "t",
        "model": {"preset": "tiny"},
        "stages": [{
            "name": "one",
            "datasets": {"a": {"ratio": 1}, "b": {"ratio": 2}},
            "global_batch": 4,
            "steps": 10,
            "lr": {"max": 1e-3, "min": 1e-5, "warmup": 2},
        }],
    }


def _stage(data: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return data["stages"][i]


def _error(data: Any) -> str:
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    return str(info.value)


def _demo_datasets_from_comment() -> list[str]:
    """The dataset names the tiny-demo header lists as the demo's (the lines after 'Needs:')."""
    lines = TINY_DEMO.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "Needs:" in line)
    names = []
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        names += [n.strip() for n in line.lstrip("#").split(",") if n.strip()]
    return names


# ---- the shipped recipes -------------------------------------------------------------------

@pytest.mark.parametrize("path", [MINIGPTV2, TINY_DEMO], ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    plan = load_plan(path)
    assert isinstance(plan, Plan) and len(plan.stages) == 3
    assert plan.name == path.stem


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_in_the_folder_parses_and_its_schedules_build(path):
    for stage in load_plan(path).stages:
        BatchSchedule([u.ratio for u in stage.datasets.values()], stage.global_batch, stage.mode)


@pytest.mark.parametrize("path", [MINIGPTV2, TINY_DEMO], ids=lambda p: p.stem)
def test_recipes_have_no_duplicate_yaml_keys(path):
    """PyYAML keeps the last of two equal keys silently; a recipe must not rely on that."""

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        keys = [loader.construct_object(k) for k, _ in node.value]
        duplicates = {k for k in keys if keys.count(k) > 1}
        assert not duplicates, f"{path.name} line {node.start_mark.line + 1}: duplicate keys {duplicates}"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    yaml.load(path.read_text(), Loader=Strict)  # noqa: S506 - a SafeLoader subclass


def test_minigptv2_stage3_is_the_released_mixture():
    stage = load_plan(MINIGPTV2).stages[2]
    assert len(stage.datasets) == 22
    assert sum(u.ratio for u in stage.datasets.values()) == 730
    assert {k: u.ratio for k, u in stage.datasets.items()} == {k: r for k, (_, _, r) in RELEASED_STAGE3.items()}
    assert list(stage.datasets) == list(RELEASED_STAGE3)  # in the released yaml's order


def test_minigptv2_stage3_entries_sharing_a_folder_name_it_and_their_task():
    stage = load_plan(MINIGPTV2).stages[2]
    for key, use in stage.datasets.items():
        if key in SHARED_FOLDERS:
            assert (use.path, use.tasks) == SHARED_FOLDERS[key], key
        elif key in ("refcoco", "refcoco-plus", "refcocog"):
            assert (use.path, use.tasks) == (None, ("refer",)), key
        else:
            assert (use.path, use.tasks) == (None, ()), key
        assert use.split == "train"


def test_minigptv2_stage3_schedule_is_the_released_one():
    stage = load_plan(MINIGPTV2).stages[2]
    assert stage.num_steps == stage.steps == 50_000  # the released yaml (the paper: 35,000)
    assert stage.global_batch == 24  # the paper's
    assert stage.lr.warmup == 1000 and stage.lr.start == 1e-6 and stage.lr.max == 1e-5 and stage.lr.min == 1e-6
    assert stage.weight_decay == 0.05
    assert stage.mode == "per_batch"
    assert stage.trainable == ("connector", "adapter")
    assert stage.max_text_tokens == 1024
    assert stage.init == "previous"


def test_minigptv2_stages_1_and_2_follow_the_paper():
    plan = load_plan(MINIGPTV2)
    one, two, three = plan.stages
    assert (one.num_steps, one.global_batch, one.lr.max) == (400_000, 96, 1e-4)
    assert (two.num_steps, two.global_batch, two.lr.max) == (50_000, 64, 1e-5)
    for stage in (one, two):
        assert NO_RATIOS_NOTE in " ".join(stage.note.split())
        assert stage.trainable == ("connector", "adapter") and stage.max_text_tokens == 1024
        assert stage.weight_decay == 0.05 and stage.mode == "per_batch"
    assert "released" in three.note and "35,000" in three.note
    # stage 1: weakly labelled heavy; stage 2: none of it; both hold caption, refer, identify, vqa
    weak = sum(u.ratio for k, u in one.datasets.items() if k in WEAKLY_LABELLED)
    assert WEAKLY_LABELLED <= set(one.datasets) and weak / sum(u.ratio for u in one.datasets.values()) > 0.5
    assert not WEAKLY_LABELLED & set(two.datasets)
    for stage in (one, two):
        assert {"coco-captions", "textcaps", "refcoco", "invrefcoco", "vqav2", "gqa"} <= set(stage.datasets)
    assert plan.model.checkpoint and plan.model.preset is None
    assert plan.total_steps == 500_000


def test_minigptv2_header_says_how_to_run_and_whose_numbers():
    text = MINIGPTV2.read_text()
    header = text[:text.index("\nname:")]
    assert "crayonflow train --plan training/recipes/minigptv2.yaml --data DIR" in header
    assert "models.presets.minigptv2_7b" in header
    for word in ("Paper", "Released", "Ours", "35,000", "issue #430", "per_batch"):
        assert word in header, word
    for key in RELEASED_STAGE3:  # every stage-3 entry's folder is documented
        folder = SHARED_FOLDERS.get(key, (key,))[0]
        assert re.search(rf"\b{re.escape(folder)}\b", header), folder


def test_minigptv2_per_batch_gives_the_released_batch_shares():
    stage = load_plan(MINIGPTV2).stages[2]
    schedule = BatchSchedule([u.ratio for u in stage.datasets.values()], stage.global_batch, stage.mode)
    assert schedule.period == 730
    batches = schedule.drawn(730) // stage.global_batch
    assert dict(zip(stage.datasets, batches.tolist())) == {k: r for k, (_, _, r) in RELEASED_STAGE3.items()}


@pytest.mark.parametrize("path", [MINIGPTV2, TINY_DEMO], ids=lambda p: p.stem)
def test_every_stage_makes_a_batch_schedule_that_repeats_within_the_stage(path):
    for stage in load_plan(path).stages:
        schedule = BatchSchedule([u.ratio for u in stage.datasets.values()], stage.global_batch, stage.mode)
        assert schedule.period <= stage.num_steps, stage.name
        assert schedule.period <= 1000, stage.name
        assert schedule.counts(0).sum() == stage.global_batch


@pytest.mark.parametrize("path", [MINIGPTV2, TINY_DEMO], ids=lambda p: p.stem)
def test_task_filters_name_tasks_the_folder_holds(path):
    plan = load_plan(path)
    for stage in plan.stages:
        for key, use in stage.datasets.items():
            folder = use.path or key
            if use.tasks:
                assert folder in BUILDER_TASKS, (stage.name, key)
                assert set(use.tasks) <= BUILDER_TASKS[folder], (stage.name, key, use.tasks)


def test_tiny_demo_names_only_datasets_the_demo_builds():
    documented = _demo_datasets_from_comment()
    assert documented == ["coco-panoptic", "flickr30k-entities", "refcoco", "vqa", "okvqa", "aokvqa", "gqa",
                          "textcaps", "ocrvqa", "visual-genome", "coco-captions", "llava", "unnatural-instructions",
                          "grit", "image-text", "multiround", "unnatural-blend", "llava-crayon"]
    plan = load_plan(TINY_DEMO)
    for stage in plan.stages:
        for key, use in stage.datasets.items():
            assert use.path is None and key in documented, (stage.name, key)


def test_tiny_demo_comment_lists_what_the_demo_builds():
    from pipelines.flows.build import ALL

    assert sorted(_demo_datasets_from_comment()) == sorted(ALL)


def test_tiny_demo_is_small_and_shaped_like_minigptv2():
    plan = load_plan(TINY_DEMO)
    assert plan.model.preset == "tiny" and plan.model.checkpoint is None and plan.data_root == "demo-output/datasets"
    assert [s.name for s in plan.stages] == ["pretrain", "multitask", "instruct"]
    assert plan.total_steps <= 1000 and plan.checkpoint_every == 100
    for stage in plan.stages:
        assert stage.mode == "exact" and stage.global_batch == 8 and stage.global_batch % 2 == 0  # 2 workers
        assert stage.trainable == ("connector", "adapter", "llm") and stage.max_text_tokens == 256
        assert (stage.lr.max, stage.lr.min, stage.lr.warmup) == (1e-3, 1e-5, 20)
    pretrain, multitask, instruct = plan.stages
    weights = {k: u.ratio / sum(v.ratio for v in pretrain.datasets.values()) for k, u in pretrain.datasets.items()}
    assert weights["grit"] + weights["image-text"] > 0.5
    assert not {"grit", "image-text"} & set(multitask.datasets)
    assert set(multitask.datasets) < set(instruct.datasets)
    assert {"multiround", "llava", "unnatural-blend"} <= set(instruct.datasets)
    share = lambda stage, key: stage.datasets[key].ratio / sum(u.ratio for u in stage.datasets.values())  # noqa: E731
    for key in multitask.datasets:  # stage 3 lowers the stage-2 sets
        assert share(instruct, key) < share(multitask, key), key


# ---- errors name their key path ------------------------------------------------------------

def test_minimal_plan_parses_with_defaults():
    plan = parse_plan(_minimal())
    stage = plan.stages[0]
    assert stage.datasets == {"a": DatasetUse(1.0), "b": DatasetUse(2.0)}
    assert (stage.mode, stage.trainable, stage.init, stage.weight_decay) == ("exact", ("connector", "adapter"),
                                                                            "previous", 0.05)
    assert (plan.seed, plan.data_root, plan.checkpoint_every) == (0, "data/datasets", 100)


def test_unknown_key_at_top_level():
    data = _minimal()
    data["stagse"] = []
    assert _error(data) == ("plan.stagse: unknown key; "
                            "known: checkpoint_every, data_root, log_every, looks_every, looks_samples, model, name, seed, "
                            "stages")


def test_unknown_key_deep():
    data = _minimal()
    _stage(data)["lr"]["warmpu"] = 10
    assert _error(data) == "plan.stages[0].lr.warmpu: unknown key; known: max, min, parts, start, warmup"
    data = _minimal()
    _stage(data)["datasets"]["b"]["task"] = ["refer"]
    assert _error(data) == "plan.stages[0].datasets.b.task: unknown key; known: path, ratio, split, tasks"


def test_wrong_types_name_the_path():
    data = _minimal()
    _stage(data)["lr"]["max"] = "1e-3"  # PyYAML reads 1e-3 (no dot) as a string
    assert _error(data) == "plan.stages[0].lr.max: expected float, got str '1e-3'"
    data = _minimal()
    _stage(data)["steps"] = 1.5
    assert _error(data) == "plan.stages[0].steps: expected int, got float 1.5"
    data = _minimal()
    _stage(data)["mode"] = "mixed"
    assert _error(data) == "plan.stages[0].mode: 'mixed' is not one of 'exact', 'per_batch'"
    data = _minimal()
    _stage(data)["datasets"]["a"]["tasks"] = "refer"
    assert _error(data) == "plan.stages[0].datasets.a.tasks: expected a list, got str"
    assert _error([]) == "plan: expected a mapping, got list"


def test_steps_and_samples_both_or_neither():
    data = _minimal()
    _stage(data)["samples"] = 100
    assert _error(data) == "plan.stages[0]: give exactly one of steps or samples"
    data = _minimal()
    del _stage(data)["steps"]
    assert _error(data) == "plan.stages[0]: give exactly one of steps or samples"


def test_steps_and_batch_positive():
    data = _minimal()
    _stage(data)["steps"] = 0
    _stage(data)["lr"]["warmup"] = 0
    assert _error(data) == "plan.stages[0]: steps and global_batch must be positive"
    data = _minimal()
    _stage(data)["global_batch"] = 0
    assert _error(data) == "plan.stages[0]: steps and global_batch must be positive"


def test_samples_with_zero_batch_is_a_plan_error():
    data = _minimal()
    del _stage(data)["steps"]
    _stage(data).update(samples=100, global_batch=0)
    assert _error(data) == "plan.stages[0]: steps and global_batch must be positive"


@pytest.mark.parametrize("ratio", [0, -1, -0.5])
def test_ratio_must_be_positive(ratio):
    data = _minimal()
    _stage(data)["datasets"]["b"]["ratio"] = ratio
    assert _error(data) == f"plan.stages[0].datasets.b.ratio: must be positive, got {float(ratio)}"


def test_no_datasets_no_stages():
    data = _minimal()
    _stage(data)["datasets"] = {}
    assert _error(data) == "plan.stages[0].datasets: at least one dataset"
    data = _minimal()
    data["stages"] = []
    assert _error(data) == "plan.stages: at least one stage"


def test_unknown_trainable_part():
    data = _minimal()
    _stage(data)["trainable"] = ["connector", "decoder", "adapters"]
    assert set(PARTS) >= {"vision", "connector", "crayon", "adapter"}
    assert _error(data) == (f"plan.stages[0].trainable: unknown parts ['adapters', 'decoder']; "
                            f"parts are {', '.join(PARTS)}")
    _stage(data)["trainable"] = list(PARTS)  # every part is allowed, with or without parameters in the model
    assert parse_plan(data).stages[0].trainable == PARTS


def test_adapter_per_dataset_needs_per_batch_mode():
    data = _minimal()
    _stage(data)["adapter"] = {"a": "crayon", "b": "vl"}
    assert _error(data) == ("plan.stages[0].adapter: one adapter per dataset needs mode per_batch (CoLLaVO's "
                            "Dual QLoRA trains one adapter per batch, so a batch holds one data type)")
    _stage(data)["mode"] = "per_batch"
    assert parse_plan(data).stages[0].adapter == {"a": "crayon", "b": "vl"}


def test_adapter_per_dataset_must_name_every_dataset():
    data = _minimal()
    _stage(data).update(mode="per_batch", adapter={"a": "crayon"})
    assert _error(data) == "plan.stages[0].adapter: no adapter named for datasets ['b']"


def test_one_adapter_for_the_stage_is_a_name():
    data = _minimal()
    _stage(data)["adapter"] = "vl"
    assert parse_plan(data).stages[0].adapter == "vl"


def test_adapter_for_an_unknown_dataset():
    data = _minimal()
    _stage(data).update(mode="per_batch", adapter={"a": "crayon", "b": "vl", "c": "vl"})
    assert _error(data) == "plan.stages[0].adapter: datasets ['c'] are not in the stage"


LR_ERROR = "plan.stages[0].lr: need 0 <= min <= max, 0 <= start <= max and 0 <= warmup <= steps"


@pytest.mark.parametrize("lr", [
    {"max": 1e-3, "warmup": 11},  # warm-up longer than the stage
    {"max": 1e-3, "min": 1e-2},  # floor over the peak
    {"max": 1e-3, "min": -1e-6},
    {"max": 1e-3, "warmup": -1},
], ids=["warmup>steps", "min>max", "min<0", "warmup<0"])
def test_learning_rate_schedule_checks(lr):
    data = _minimal()
    _stage(data)["lr"] = lr
    assert _error(data) == LR_ERROR


def test_warmup_may_equal_steps():
    data = _minimal()
    _stage(data)["lr"]["warmup"] = 10
    assert parse_plan(data).stages[0].lr.warmup == 10


def test_warmup_start_must_not_be_negative():
    data = _minimal()
    _stage(data)["lr"]["start"] = -1e-4
    with pytest.raises(PlanError, match=r"^plan\.stages\[0\]\.lr: "):
        parse_plan(data)


def test_a_part_may_have_its_own_peak_rate():
    data = _minimal()
    _stage(data)["lr"]["parts"] = {"connector": 3e-3, "adapter": 1}
    lr = parse_plan(data).stages[0].lr
    assert lr.parts == {"connector": 3e-3, "adapter": 1.0}
    assert parse_plan(_minimal()).stages[0].lr.parts == {}


def test_part_rates_parse_from_yaml_in_the_documented_syntax(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("""name: t
model: {preset: tiny}
stages:
  - name: one
    datasets: {a: {ratio: 1}}
    global_batch: 4
    steps: 10
    trainable: [connector, llm]
    lr: {max: 3.0e-4, min: 1.0e-5, warmup: 2, start: 1.0e-5, parts: {connector: 3.0e-3}}
""")
    assert load_plan(plan).stages[0].lr.parts == {"connector": 3.0e-3}


@pytest.mark.parametrize(("parts", "message"), [
    ({"decoder": 1e-3}, f"plan.stages[0].lr.parts.decoder: unknown part; parts are {', '.join(PARTS)}"),
    ({"connector": 0}, "plan.stages[0].lr.parts.connector: must be positive, got 0.0"),
    ({"connector": -1e-3}, "plan.stages[0].lr.parts.connector: must be positive, got -0.001"),
    ({"llm": 1e-4}, "plan.stages[0].lr.parts.llm: llm is not in the stage's trainable (connector, adapter), "
                    "so this rate would never train it"),
    ({"connector": "3e-3"}, "plan.stages[0].lr.parts.connector: expected float, got str '3e-3'"),
], ids=["unknown", "zero", "negative", "not-trainable", "string"])
def test_part_rate_errors_name_their_key(parts, message):
    data = _minimal()
    _stage(data)["lr"]["parts"] = parts
    assert _error(data) == message


def test_part_rates_need_a_positive_base_peak_to_scale():
    data = _minimal()
    _stage(data)["lr"] = {"max": 0.0, "parts": {"connector": 1e-3}}
    assert _error(data) == "plan.stages[0].lr.parts: part rates scale the stage's curve, so max must be positive"


def test_duplicate_stage_names():
    data = _minimal()
    data["stages"].append(copy.deepcopy(_stage(data)))
    assert _error(data) == "plan.stages: stage names must be distinct"


@pytest.mark.parametrize("model", [{"preset": "tiny", "checkpoint": "ckpt"}, {}, {"options": {"crayon": True}}])
def test_model_needs_exactly_one_of_preset_or_checkpoint(model):
    data = _minimal()
    data["model"] = model
    assert _error(data) == "plan.model: give exactly one of preset or checkpoint"


def test_model_options_pass_through():
    data = _minimal()
    data["model"] = {"preset": "tiny", "options": {"crayon": True, "connector": "vce"}}
    assert parse_plan(data).model.options == {"crayon": True, "connector": "vce"}


@pytest.mark.parametrize("key", ["checkpoint_every", "log_every"])
def test_checkpoint_and_log_intervals_positive(key):
    data = _minimal()
    data[key] = 0
    assert _error(data) == f"plan.{key}: must be positive, got 0"


# ---- files ---------------------------------------------------------------------------------

def test_yaml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: t\nstages: [\n  {name: one\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: not valid YAML (")


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "plan.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: cannot be read (No such file or directory)"


def test_errors_from_a_file_start_with_the_file(tmp_path):
    data = _minimal()
    _stage(data)["lr"]["warmpu"] = 10
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: plan.stages[0].lr.warmpu: unknown key; known: max, min, parts, start, warmup"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: plan: expected a mapping, got NoneType"


DUPLICATE_KEY_PLAN = """\
name: t
model: {preset: tiny}
stages:
  - name: one
    global_batch: 4
    steps: 10
    lr: {max: 1.0e-3}
    datasets:
      refcoco: {ratio: 25, tasks: [refer]}
      refcoco: {ratio: 10, tasks: [identify]}
"""


def test_pyyaml_keeps_the_last_of_two_equal_keys(tmp_path):
    """Why the recipes give entries sharing a folder their own keys and a ``path:``."""
    datasets = yaml.safe_load(DUPLICATE_KEY_PLAN)["stages"][0]["datasets"]
    assert datasets == {"refcoco": {"ratio": 10, "tasks": ["identify"]}}


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(DUPLICATE_KEY_PLAN)
    with pytest.raises(PlanError, match="duplicate key"):
        load_plan(path)


# ---- derived values ------------------------------------------------------------------------

@pytest.mark.parametrize(("samples", "batch", "steps"), [(100, 8, 13), (96, 8, 12), (1, 24, 1), (730, 24, 31)])
def test_samples_become_ceil_samples_over_batch_steps(samples, batch, steps):
    data = _minimal()
    del _stage(data)["steps"]
    _stage(data).update(samples=samples, global_batch=batch)
    _stage(data)["lr"]["warmup"] = 0
    plan = parse_plan(data)
    assert plan.stages[0].num_steps == steps == math.ceil(samples / batch)
    assert plan.total_steps == steps


def test_warmup_is_checked_against_steps_made_from_samples():
    data = _minimal()
    del _stage(data)["steps"]
    _stage(data).update(samples=20, global_batch=8)  # 3 steps
    _stage(data)["lr"]["warmup"] = 3
    parse_plan(data)
    _stage(data)["lr"]["warmup"] = 4
    assert _error(data) == LR_ERROR


def test_dataset_path_relative_absolute_and_overridden_roots(tmp_path):
    plan = parse_plan(_minimal())
    use = DatasetUse(1.0)
    assert plan.dataset_path("refcoco", use) == Path("data/datasets/refcoco")  # relative default root
    data = _minimal()
    data["data_root"] = str(tmp_path)
    absolute = parse_plan(data)
    assert absolute.dataset_path("refcoco", use) == tmp_path / "refcoco"
    assert plan.dataset_path("refcoco", use, tmp_path / "other") == tmp_path / "other" / "refcoco"  # --data
    assert absolute.dataset_path("refcoco", use, Path("rel")) == Path("rel/refcoco")
    pinned = DatasetUse(1.0, path=str(tmp_path / "pinned"))  # an absolute path ignores every root
    assert plan.dataset_path("x", pinned) == absolute.dataset_path("x", pinned, Path("rel")) == tmp_path / "pinned"


def test_relative_dataset_path_is_under_the_data_root(tmp_path):
    plan = parse_plan(_minimal())
    use = DatasetUse(1.0, path="refcoco", tasks=("identify",))
    assert plan.dataset_path("invrefcoco", use) == Path("data/datasets/refcoco")
    assert plan.dataset_path("invrefcoco", use, tmp_path) == tmp_path / "refcoco"


def test_the_pretrained_recipe_names_options_the_tiny_preset_takes_and_trains_the_connector_faster():
    from models.presets import PRESETS

    plan = load_plan(RECIPES / "tiny-pretrained.yaml")
    config = PRESETS[plan.model.preset](**plan.model.options)  # a misspelt option is a TypeError here
    assert config.llm.checkpoint and config.vision.checkpoint
    align, multitask = plan.stages
    assert align.trainable == ("connector",) and multitask.lr.parts["connector"] == pytest.approx(10 * multitask.lr.max)
