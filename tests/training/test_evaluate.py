"""Evaluation: metrics pinned by hand, an untrained and a perfect answerer on a sample world's val
split, and ``crayonflow eval`` through a local typer app.

The datasets are the session's training datasets (12 images, tests/training/conftest.py); the
sample world puts image ``index % 10 == 8`` in val, so that split holds one image.
"""

from __future__ import annotations

import json
import re
from io import BytesIO
from pathlib import Path

import pytest
import typer
from PIL import Image as PILImage
from typer.testing import CliRunner

from datasets_builders.build import build_dataset
from datasets_builders.formats.boxes import PixelBox
from datasets_builders.formats.schema import Image
from datasets_builders.store import ShardDataset
from datasets_builders.templates.render import unit_box
from models.build import build_model
from models.checkpoint import save_model
from models.presets import tiny
from training.cli import evaluate_command
from training.evaluate import (
    METRICS,
    EvalError,
    blind_cells,
    looking_summary,
    Prompt,
    evaluate,
    find_datasets,
    generator,
    iou,
    normalise,
    refer_hit,
    token_f1,
    vqa_accuracy,
)

DATASETS = ("refcoco", "vqa", "coco-captions", "coco-panoptic")
runner = CliRunner()


@pytest.fixture(scope="module")
def data(data_root) -> Path:
    """The session's training datasets (tests/training/conftest.py): their val split is held out."""
    return data_root


@pytest.fixture(scope="module")
def model():
    return build_model(tiny())


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("eval")(evaluate_command)
    app.callback()(lambda: None)  # keep "eval" a subcommand, as under crayonflow
    return app


# ---- metrics ---------------------------------------------------------------------------------


def test_iou_of_overlapping_nested_disjoint_and_touching_boxes():
    a = PixelBox(0, 0, 10, 10)
    assert iou(a, a) == 1.0
    assert iou(a, PixelBox(5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert iou(a, PixelBox(0, 0, 5, 10)) == pytest.approx(0.5)  # nested half
    assert iou(a, PixelBox(20, 20, 30, 30)) == 0.0  # disjoint
    assert iou(a, PixelBox(10, 0, 20, 10)) == 0.0  # touching: exclusive edges share no pixel
    assert iou(a, PixelBox(9, 9, 19, 19)) == pytest.approx(1 / 199)  # one shared pixel


def test_normalise_lowercases_and_removes_punctuation_and_extra_whitespace():
    assert normalise("  The Red, Car!  ") == "the red car"
    assert normalise("Yes.") == "yes"
    assert normalise("it's a t-shirt?") == "it s a t shirt"
    assert normalise("...") == ""


def test_token_f1_is_the_harmonic_mean_of_word_precision_and_recall():
    assert token_f1("a red square", "a red square") == 1.0
    assert token_f1("a red circle", "a red square") == pytest.approx(2 / 3)
    assert token_f1("red", "a red square in a room") == pytest.approx(2 * 1 * (1 / 6) / (1 + 1 / 6))
    assert token_f1("a a a", "a b") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # each word once
    assert token_f1("grass", "a red square") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "a") == 0.0


def test_vqa_accuracy_is_matching_annotators_over_three_capped_at_one():
    counts = {"red": 2, "dark red": 1, "blue": 7}
    assert vqa_accuracy("Red.", counts, "blue") == pytest.approx(2 / 3)
    assert vqa_accuracy("blue", counts, "blue") == 1.0
    assert vqa_accuracy("green", counts, "blue") == 0.0
    assert vqa_accuracy("Blue!", None, "blue") == 1.0  # no counts: the stored answer decides


def test_refer_hit_scores_the_first_box_in_pixels_at_iou_over_one_half():
    truth = PixelBox(20, 10, 120, 60)  # {<10><10><60><60>} of a 200 x 100 image
    assert refer_hit("{<10><10><60><60>}", truth, 200, 100) == 1.0
    assert refer_hit("it is {<10><10><35><60>} or {<10><10><60><60>}", truth, 200, 100) == 0.0  # IoU exactly 0.5
    assert refer_hit("no box here", truth, 200, 100) == 0.0


# ---- the driver ------------------------------------------------------------------------------


def test_an_untrained_tiny_model_scores_every_task_of_the_val_split_within_zero_and_one(model, data):
    report = evaluate(model, data, split="val")
    assert {s.task for s in report.scores} == set(METRICS)
    tasks = [(s.task, s.metric) for s in report.scores if s.family is None]
    assert tasks == [(t, m) for t, ms in METRICS.items() for m in ms]
    for s in report.scores:
        assert s.n > 0 and 0.0 <= s.value <= 1.0, s
    assert report.score("c2b").n == 2 and report.score("b2c").n == 1  # one val image: one yes, one no, one box
    assert all(1 <= len(report.examples[t]) <= 5 for t in METRICS)
    json.dumps(report.to_json())


def perfect(data: Path):
    """An answerer that knows the truth from the datasets themselves, not from the metric code."""
    samples = {(name, s.key): s for name in DATASETS for s in ShardDataset(data / name).samples()}

    def answer(prompts: list[Prompt]) -> list[str]:
        out = []
        for p in prompts:
            s = samples[(p.dataset, p.key)]
            if p.task == "c2b":
                cls = re.search(r'category "(.+?)"', p.instruction).group(1)
                out.append("Yes." if cls in {seg["class"] for seg in s.meta["segments"]} else "No")
            elif p.task == "b2c":
                box = re.search(r"\[[^]]+\]", p.instruction).group(0)
                out.append(next(seg["class"] for seg in s.meta["segments"]
                                if unit_box(seg["box"], s.image.width, s.image.height) == box).title())
            else:
                out.append(s.turns[1].content)
        return out

    return answer


def test_a_perfect_answerer_scores_one_on_every_metric(data):
    report = evaluate(None, data, split="val", batch_size=3, answer_fn=perfect(data))
    assert {(s.task, s.metric): s.value for s in report.scores if s.family is None} == \
        {(t, m): 1.0 for t, ms in METRICS.items() for m in ms}
    assert all(s.value == 1.0 for s in report.scores)  # every family row too
    train = evaluate(None, data, split="train", limit=4, answer_fn=perfect(data))  # more images, same result
    assert all(s.value == 1.0 for s in train.scores) and train.score("refer").n == 4 and train.score("c2b").n == 8


def test_another_caption_of_the_same_image_is_a_match(data):
    samples = list(ShardDataset(data / "coco-captions").samples())
    by_image: dict[int, list[str]] = {}
    for sample in samples:
        by_image.setdefault(sample.meta["image_id"], []).append(sample.turns[1].content)
    others = {s.key: next(c for c in by_image[s.meta["image_id"]] if c != s.turns[1].content) for s in samples}
    report = evaluate(None, {"coco-captions": data / "coco-captions"}, split="val",
                      answer_fn=lambda prompts: [others[p.key] for p in prompts])
    assert report.score("caption", "exact").value == 1.0 and report.score("caption", "token-f1").value == 1.0
    assert report.score("caption").n == 5 and all(e.answer != e.expected for e in report.examples["caption"])


def test_derived_datasets_are_skipped_because_they_repeat_their_inputs(data, tmp_path):
    (tmp_path / "refcoco").symlink_to(data / "refcoco")
    build_dataset("multiround", [data / "refcoco", data / "vqa"], tmp_path / "multiround")
    assert list(find_datasets(tmp_path)) == ["refcoco"]


def test_an_answerer_that_always_says_no_gets_half_of_the_class_probes(data):
    report = evaluate(None, data, split="train", answer_fn=lambda prompts: ["no"] * len(prompts))
    assert report.score("c2b").value == 0.5 and report.score("c2b").n == 20  # 10 train images, yes + no each
    assert report.score("refer").value == 0.0 and report.score("caption", "token-f1").value == 0.0


def test_probes_are_chosen_by_key_so_two_runs_ask_the_same_questions(data):
    asked: list[list[str]] = [[], []]
    for run in asked:
        evaluate(None, data, split="train", answer_fn=lambda ps, run=run: run.extend(p.instruction for p in ps)
                 or [""] * len(ps))
    assert asked[0] == asked[1] and len(asked[0]) > 0


def test_the_generator_answers_image_and_text_only_prompts_in_one_batch_with_crayon_maps():
    crayon_model = build_model(tiny(crayon=True))
    buffer = BytesIO()
    PILImage.new("RGB", (40, 30), (200, 30, 30)).save(buffer, "PNG")
    image = Image(buffer.getvalue(), "png", 40, 30)
    crayon = BytesIO()
    PILImage.new("RGB", (40, 30), (3, 1, 0)).save(crayon, "PNG")  # class 3, instance 1 everywhere
    prompts = [Prompt("c2b", "x", "a", "is there a square?", image, crayon.getvalue()),
               Prompt("vqa", "x", "b", "[vqa] what is two plus two?", None),
               Prompt("caption", "x", "c", "[caption] describe it", image)]
    answers = generator(crayon_model, max_new_tokens=5)(prompts)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def test_a_folder_without_datasets_or_a_split_without_samples_is_an_eval_error(data, tmp_path):
    with pytest.raises(EvalError, match="no dataset folders"):
        evaluate(None, tmp_path, answer_fn=lambda ps: [""] * len(ps))
    with pytest.raises(EvalError, match="no 'dev' samples"):
        evaluate(None, data, split="dev", answer_fn=lambda ps: [""] * len(ps))
    assert list(find_datasets(data / "vqa")) == ["vqa"]  # a dataset folder itself is a folder of one


# ---- the command -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("eval-ckpt") / "tiny")


def test_the_eval_command_writes_the_json_report_and_prints_the_table(checkpoint, data):
    result = runner.invoke(cli(), ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--limit", "2",
                                   "--batch-size", "4", "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    doc = json.loads((checkpoint / "eval-val.json").read_text())
    assert doc["split"] == "val" and {s["task"] for s in doc["scores"]} == set(METRICS)
    assert all(s["n"] <= 2 for s in doc["scores"] if s["task"] not in ("c2b", "b2c"))
    for word in ("refer", "acc@0.5", "token-f1", "c2b", "b2c", "eval-val.json"):
        assert word in result.output


def test_the_eval_command_writes_where_out_says(checkpoint, data, tmp_path):
    out = tmp_path / "reports" / "test.json"
    result = runner.invoke(cli(), ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "test",
                                   "--limit", "1", "--max-new-tokens", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["split"] == "test"


@pytest.mark.parametrize("case", ["no datasets", "no samples", "no folder", "no checkpoint"])
def test_the_eval_command_exits_2_with_one_line(case, checkpoint, data, tmp_path):
    args = {"no datasets": [checkpoint, tmp_path], "no samples": [checkpoint, data],
            "no folder": [checkpoint, tmp_path / "missing"], "no checkpoint": [tmp_path, data]}[case]
    split = "dev" if case == "no samples" else "val"
    result = runner.invoke(cli(), ["eval", "--checkpoint", str(args[0]), "--data", str(args[1]), "--split", split])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output


# ---- the blind control -----------------------------------------------------------------------


def test_an_answerer_that_ignores_the_image_is_no_better_than_its_blind_control(data):
    report = evaluate(None, data, split="train", limit=6, answer_fn=perfect(data))  # knows the truth by key alone
    for s in report.scores:
        assert s.value == s.blind == 1.0 and (s.gap_low, s.gap_high) == (0.0, 0.0) and not s.looks, s
    assert blind_cells(report.score("refer"))[2] == "not looking"
    assert "looks at its picture for: no task" in looking_summary(report.scores)


def test_an_answerer_that_reads_the_image_beats_its_blind_control(data):
    knows = perfect(data)
    truths = {(s.image.data, s.turns[0].content): s.key for name in DATASETS
              for s in ShardDataset(data / name).samples() if s.image is not None}

    def reads_image(prompts: list[Prompt]) -> list[str]:  # answers only questions about the picture it is shown
        return [a if truths.get((p.image.data, p.instruction)) == p.key else ""
                for p, a in zip(prompts, knows(prompts), strict=True)]

    report = evaluate(None, data, split="train", answer_fn=reads_image)  # 10 pictures: every swap changes it
    for task in ("refer", "identify", "vqa"):
        s = report.score(task)
        assert s.value == 1.0 and s.blind < 0.5 and s.gap_low > 0 and s.looks, s
    assert looking_summary(report.scores).startswith("looks at its picture for: refer, identify, vqa")
    assert evaluate(None, data, split="train", limit=6, answer_fn=reads_image, blind=False).score("refer").blind is None


def test_vqa_rows_break_down_by_question_and_answer_type_and_refer_by_expression_kind(data):
    report = evaluate(None, data, split="train", answer_fn=perfect(data))
    families = {(s.task, s.family) for s in report.scores}
    assert ("vqa", "answer_type=yes/no") in families and ("vqa", "question_type=how many") in families
    assert {f for t, f in families if t == "refer"} >= {None, "expression=attribute"}
    assert {f for t, f in families if t == "caption"} == {None}  # captions carry no family
    for task in ("vqa", "refer"):
        rows = [s for s in report.scores if s.task == task and s.family and s.family.startswith(
            "expression=" if task == "refer" else "answer_type=")]
        assert sum(s.n for s in rows) == report.score(task).n  # each sample in exactly one value of a family
    doc = report.to_json()
    assert {"family", "gap", "gap_low", "gap_high", "verdict"} <= set(doc["scores"][0])
