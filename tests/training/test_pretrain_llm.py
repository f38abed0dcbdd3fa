"""``crayonflow pretrain llm``: the scene as text, true text samples, a cached folder the tiny preset
loads, and the command. Runs are a few steps on a few scenes (seconds, one torch thread)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from transformers import LlamaForCausalLM
from typer.testing import CliRunner

from datasets_builders.formats.boxes import find_boxes
from datasets_builders.sample_world.language import expression_kind, left_to_right, referring_expressions
from datasets_builders.sample_world.questions import vqa_pairs
from datasets_builders.sample_world.scene import generate_scene
from datasets_builders.sample_world.scene_text import SEPARATOR, scene_text, text_samples, thing_box
from models.build import build_model
from models.presets import tiny
from models.tokenizer import tiny_tokenizer
from training.pretrain.cache import FINGERPRINT_FILE
from training.pretrain.cli import llm_command
from training.pretrain.llm import answer_hit, encode_in_slot, pretrain_llm

SCENES = [generate_scene(5, index) for index in range(12)]
TINY_RUN = {"steps": 20, "batch": 2, "scenes": 4, "held_out_scenes": 2, "warmup": 2, "threads": 1,
            "progress": False}


def test_scene_text_names_every_thing_with_its_box_left_to_right_then_the_stuff():
    for scene in SCENES:
        text = scene_text(scene)
        assert text == scene_text(generate_scene(5, scene.index))  # deterministic
        parts = text.split(SEPARATOR)
        things = left_to_right(scene)
        assert parts[:len(things)] == [f"{t.name} {thing_box(scene, t)}" for t in things]
        assert parts[len(things):] == [s.category for s in scene.stuff]
    assert any(len(scene.things) >= 3 for scene in SCENES)  # the order was checked on crowded scenes too


def test_text_samples_are_deterministic_and_their_answers_true():
    tasks_seen = set()
    for scene in SCENES:
        samples = text_samples(scene, np.random.default_rng([7, scene.index]))
        assert samples == text_samples(scene, np.random.default_rng([7, scene.index]))
        by_box = {thing_box(scene, t): t for t in scene.things}
        questions = vqa_pairs(scene, np.random.default_rng([7, scene.index]))  # drawn first from the same rng
        vqa = [s for s in samples if s.task == "vqa"]
        assert [(s.answer, s.family) for s in vqa] == [(q.answer, q.question_type) for q in questions]
        assert all(q.question in s.instruction and s.instruction.startswith("[vqa]") for s, q in zip(vqa, questions))
        for sample in samples:
            tasks_seen.add(sample.task)
            if sample.task == "refer":  # the answer is the box of an object the instruction names alone
                thing = by_box[sample.answer]
                named = [e for e in referring_expressions(scene, thing) if e in sample.instruction]
                assert named and sample.family in {expression_kind(e) for e in named}
            elif sample.task == "identify":  # the answer names the object in the asked box
                (box,) = find_boxes(sample.instruction)
                thing = by_box["{<%d><%d><%d><%d>}" % box]
                assert list(sample.references) == referring_expressions(scene, thing)
                assert sample.answer in sample.references
                assert sample.family == expression_kind(sample.answer)
        referable = [t for t in scene.things if referring_expressions(scene, t)]
        assert sum(s.task == "refer" for s in samples) == len(referable)
        assert sum(s.task == "caption" for s in samples) == 1
    assert tasks_seen == {"vqa", "refer", "identify", "caption"}


def test_scene_text_sits_in_the_image_slot_and_a_right_answer_scores():
    tokenizer = tiny_tokenizer()
    scene = SCENES[0]
    sample = next(s for s in text_samples(scene, np.random.default_rng(0)) if s.task == "refer")
    scene_ids = tokenizer(scene_text(scene), add_special_tokens=False)["input_ids"]
    encoded = encode_in_slot(tokenizer, scene_ids, sample)
    text = tokenizer.decode(encoded.input_ids, skip_special_tokens=True)
    assert text.startswith(f"[INST] <Img>{scene_text(scene)}</Img> {sample.instruction}  [/INST]")
    answered = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != -100]
    assert tokenizer.decode(answered, skip_special_tokens=True) == sample.answer
    assert answer_hit(sample, sample.answer) == 1.0 and answer_hit(sample, "{<0><0><1><1>}") == 0.0


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "llm"
    return out, pretrain_llm(out, **TINY_RUN)


def test_pretrain_llm_writes_a_folder_the_tiny_preset_loads(pretrained):
    out, report = pretrained
    assert not report["reused"] and report["folder"] == str(out)
    assert set(report["held_out"]) == {"vqa", "refer", "identify"}
    own, blind, n = report["held_out"]["vqa"]["all"]
    assert 0 <= own <= 1 and 0 <= blind <= 1 and n > 0
    assert report["losses"][-1][0] == TINY_RUN["steps"]
    model = build_model(tiny(llm_checkpoint=str(out)))
    saved = LlamaForCausalLM.from_pretrained(out, local_files_only=True)
    assert torch.equal(model.llm.get_input_embeddings().weight, saved.get_input_embeddings().weight)
    random = build_model(tiny())
    assert not torch.equal(random.llm.get_input_embeddings().weight, saved.get_input_embeddings().weight)
    assert model.tokenizer.get_vocab() == random.tokenizer.get_vocab()


def test_pretrain_llm_reuses_a_matching_folder_and_rebuilds_on_a_changed_argument(pretrained):
    out, first = pretrained
    stamp = (out / FINGERPRINT_FILE).read_text()
    again = pretrain_llm(out, **TINY_RUN)
    assert again["reused"] and again["held_out"] == first["held_out"]
    changed = pretrain_llm(out, **{**TINY_RUN, "steps": 3})
    assert not changed["reused"] and changed["steps"] == 3
    assert json.loads((out / FINGERPRINT_FILE).read_text())["fingerprint"] != json.loads(stamp)["fingerprint"]


def test_the_command_prints_the_held_out_table_and_says_when_it_reuses(tmp_path):
    app = typer.Typer()
    app.command()(llm_command)
    runner = CliRunner()
    help_text = runner.invoke(app, ["--help"], terminal_width=200).output
    for option in ("--out", "--steps", "--batch", "--lr", "--seed"):
        assert option in help_text
    args = ["--out", str(tmp_path / "llm"), "--steps", "2", "--batch", "2", "--scenes", "2",
            "--held-out-scenes", "2", "--threads", "1"]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "own" in first.output and "blind" in first.output and "refer" in first.output
    assert "trained in" in first.output and (tmp_path / "llm" / "config.json").is_file()
    second = runner.invoke(app, args, terminal_width=200)
    assert second.exit_code == 0 and "reused" in second.output
    weighted = runner.invoke(app, [*args, "--weights", "refer=1"], terminal_width=200)
    assert weighted.exit_code == 0 and "trained in" in weighted.output, weighted.output  # another recipe
    wrong = runner.invoke(app, [*args, "--weights", "caption=1"], terminal_width=200)
    assert wrong.exit_code != 0 and "task_weights" in wrong.output


def test_task_weights_set_each_rows_task_and_are_checked():
    from training.pretrain.llm import _draw_batch

    tokenizer = tiny_tokenizer()
    scenes = [generate_scene(5, i) for i in range(6)]
    ids = [tokenizer(scene_text(s), add_special_tokens=False)["input_ids"] for s in scenes]
    rng = np.random.default_rng(0)
    batch = _draw_batch(tokenizer, scenes, ids, rng, 24, ("vqa", "refer", "identify"), {"refer": 1.0, "vqa": 0.0})
    prompts = tokenizer.batch_decode(batch["input_ids"])
    assert all("[refer]" in p for p in prompts), prompts[:2]
    with pytest.raises(ValueError, match="task_weights"):
        pretrain_llm(Path("unused"), task_weights={"caption": 1.0}, tasks=("vqa",))
