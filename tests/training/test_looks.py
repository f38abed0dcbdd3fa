"""``looks``: an untrained model shows no gap, a model whose visual tokens carry the answer shows
one, ``crayonflow looks`` through a local typer app, the plan keys and the trainer's hook.

The datasets are the session's training datasets (12 scenes, tests/training/conftest.py). Their
val split holds one picture per task, so no val probe can be deranged; the gap tests probe the
train split, whose ten pictures can.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import typer
import xxhash
from PIL import Image as PILImage
from typer.testing import CliRunner

from datasets_builders.store import ShardDataset
from models.build import build_model
from models.checkpoint import save_model
from models.grounded_vlm import GroundedVLM
from models.inputs import InputSpec
from models.presets import tiny
from pipelines.lineage import looks_curve_png
from training.cli import looks_command
from training.collate import Collator
from training.evaluate import EvalError, image_hash
from training.looks import looks, pictured, probes
from training.plan import PlanError, parse_plan
from training.train_loop import _flat, _looks_metrics

runner = CliRunner()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny())


def image_tasks(data: Path, split: str) -> set[str]:
    """Tasks with a picture in the split, read from the indexes directly."""
    tasks = set()
    for folder in data.iterdir():
        ds = ShardDataset(folder)
        tasks |= {t for i, (t, s) in enumerate(zip(ds.index["task"].to_pylist(), ds.index["split"].to_pylist()))
                  if s == split and image_hash(ds, i) is not None}
    return tasks


# ---- the probe --------------------------------------------------------------------------------


def test_an_untrained_model_shows_no_gap_on_any_task(model, data_root):
    report = looks(model, data_root, split="train", per_task=24)
    assert set(report.tasks) == image_tasks(data_root, "train") == {"caption", "crayon", "identify", "refer", "vqa"}
    for task in report.tasks:
        row = report.row(task)
        assert row.n == min(24, pictured({p.name: p for p in data_root.iterdir()}, "train")[task])
        assert row.paired > 0 and abs(row.gap) < 0.05, row
        assert 5.0 < row.own < 9.0 and 5.0 < row.zero < 9.0, row  # about ln(vocab 2048) = 7.6
    assert any(r.family and r.family.startswith("question_type=") for r in report.rows)  # vqa's families
    assert report.to_json()["rows"][0]["verdict"] in ("looking", "not looking")


def test_the_subset_is_the_first_rows_of_the_split_in_storage_order(data_root):
    datasets = {"vqa": data_root / "vqa"}
    first = [p.fetched.sample.key for p in probes(datasets, "train", 5)]
    ds = ShardDataset(data_root / "vqa")
    rows = [i for i, s in enumerate(ds.index["split"].to_pylist()) if s == "train"][:5]
    assert first == [ds.key(i) for i in rows]
    assert [p.fetched.sample.key for p in probes(datasets, "train", 5)] == first  # deterministic


def test_val_pictures_that_cannot_be_deranged_have_no_gap_and_no_verdict(model, data_root):
    report = looks(model, data_root, split="val")
    assert set(report.tasks) == image_tasks(data_root, "val")
    for task in report.tasks:  # one val picture per task: every donor would show the same picture
        row = report.row(task)
        assert row.paired == 0 and row.deranged is None and row.gap is None and row.verdict == "not asked"


def test_no_datasets_or_no_pictured_samples_is_an_eval_error(model, data_root, tmp_path):
    with pytest.raises(EvalError, match="no dataset folders"):
        looks(model, tmp_path)
    with pytest.raises(EvalError, match="no 'dev' samples with a picture"):
        looks(model, data_root, split="dev")
    with pytest.raises(EvalError, match="no 'train' samples with a picture"):
        looks(model, {"text": data_root / "unnatural-instructions"}, split="train")  # text only: skipped


def test_a_crayon_model_reads_each_picture_with_its_own_crayon_map(data_root):
    """The deranged pass lends the donor's crayon map with its picture; the blank pass blanks both."""
    crayon_model = build_model(tiny(crayon=True))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = crayon_model.forward
    crayon_model.forward = lambda **t: seen.append((t["pixel_values"], t["crayon"])) or forward(**t)
    report = looks(crayon_model, {"coco-panoptic": data_root / "coco-panoptic"}, split="train", per_task=6)
    assert report.row("crayon").paired == 6 and len(seen) == 3  # own, blank, deranged
    maps = {}
    for pixels, crayons in seen:
        for picture, crayon in zip(pixels, crayons):
            maps.setdefault(_pixels_hash(picture), set()).add(_pixels_hash(crayon))
    blank = _pixels_hash(torch.zeros_like(seen[0][0][0]))
    assert maps.pop(blank) == {_pixels_hash(torch.zeros_like(seen[0][1][0]))}
    assert len(maps) == 6 and all(len(m) == 1 for m in maps.values()) and seen[0][1].any()


class OracleVLM(GroundedVLM):
    """Perfect perception: a picture's visual tokens are the LLM's embeddings of the answer to the
    question asked about it (looked up by pixels and prompt text; padded to the visual-token count);
    a picture asked a question it does not belong to (a donor's, a blank one) carries nothing.
    ``forced`` sets the tokens directly (training on shuffled pairs)."""

    answers: dict[tuple[int, str], list[int]]
    forced: list[list[int]] | None = None

    def embed(self, input_ids, image_mask, pixel_values=None, crayon=None):  # noqa: ANN001, ANN201
        self.asked = [self.tokenizer.decode(ids, skip_special_tokens=True)
                      for ids, mask in zip(input_ids, image_mask) if mask.any()]
        return super().embed(input_ids, image_mask, pixel_values, crayon)

    def encode_images(self, pixel_values, crayon=None):  # noqa: ANN001, ANN201
        table, pad = self.llm.get_input_embeddings(), self.tokenizer.pad_token_id
        tokens = self.forced or [self.answers.get((_pixels_hash(p), text), []) for p, text in
                                 zip(pixel_values, self.asked)]
        ids = torch.tensor([t[:self.visual_tokens] + [pad] * (self.visual_tokens - len(t[:self.visual_tokens]))
                            for t in tokens], device=pixel_values.device)
        return table(ids), None


def _pixels_hash(pixels: torch.Tensor) -> int:
    return xxhash.xxh3_64_intdigest(pixels.detach().cpu().numpy().tobytes())


@pytest.mark.slow
def test_a_model_whose_pictures_carry_the_answer_shows_a_clear_gap(data_root):
    """Fine-tune the tiny LLM 150 steps to copy the oracle's visual tokens, on train samples the probe
    does not ask, each question paired with a random answer of its task (and that answer in the
    picture), so copying is the only way down; then probe the first 12 train samples per task."""
    torch.manual_seed(0)
    oracle = build_model(tiny())
    oracle.__class__ = OracleVLM
    used = {name: data_root / name for name in ("refcoco", "vqa")}
    collator = Collator(InputSpec.of(oracle), 0, vary_templates=False)

    def answer(fetched) -> list[int]:  # noqa: ANN001
        return oracle.tokenizer(fetched.sample.turns[1].content, add_special_tokens=False)["input_ids"]

    probed = {p.fetched.sample.key for p in probes(used, "train", 12)}
    oracle.answers, pools = {}, {}
    for p in probes(used, "train", 1000):
        t = collator([p.fetched]).tensors
        asked = oracle.tokenizer.decode(t["input_ids"][0], skip_special_tokens=True)
        oracle.answers[(_pixels_hash(t["pixel_values"][0]), asked)] = answer(p.fetched)
        if p.fetched.sample.key not in probed:
            pools.setdefault(p.task, []).append(p.fetched)
    oracle.set_trainable(("adapter", "llm"))
    optimizer = torch.optim.AdamW([p for p in oracle.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    rng = random.Random(0)
    oracle.train()
    for _ in range(150):
        rows, oracle.forced = [], []
        for _ in range(16):
            pool = pools[rng.choice(("identify", "vqa", "refer"))]
            question, other = rng.choice(pool), rng.choice(pool)
            turns = (question.sample.turns[0], other.sample.turns[1])
            rows.append(replace(question, sample=replace(question.sample, turns=turns)))
            oracle.forced.append(answer(other))
        oracle(**collator(rows).tensors).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    oracle.forced = None

    report = looks(oracle, used, split="train", per_task=12)
    for task, clear in (("refer", 1.0), ("identify", 0.25)):  # measured: +2.2 and +0.57 nats
        row = report.row(task)
        assert row.gap > clear and row.interval[0] > 0 and row.verdict == "looking", row
        assert row.zero > row.own, row
    untrained = looks(build_model(tiny()), used, split="train", per_task=12)
    assert all(r.verdict == "not looking" for r in untrained.rows if r.family is None)


# ---- the command ------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("looks")(looks_command)
    app.callback()(lambda: None)  # keep "looks" a subcommand, as under crayonflow
    return app


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("looks-ckpt") / "tiny")


def test_the_looks_command_prints_json_only_with_json(checkpoint, data_root):
    result = runner.invoke(cli(), ["looks", "--checkpoint", str(checkpoint), "--data", str(data_root),
                                   "--split", "train", "--per-task", "4", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["split"] == "train" and {r["task"] for r in doc["rows"]} == image_tasks(data_root, "train")
    assert all(r["n"] <= 4 and {"own", "deranged", "zero", "gap", "interval", "verdict"} <= set(r) for r in doc["rows"])


def test_the_looks_command_prints_a_table(checkpoint, data_root):
    result = runner.invoke(cli(), ["looks", "--checkpoint", str(checkpoint), "--data", str(data_root),
                                   "--per-task", "2"])
    assert result.exit_code == 0, result.output
    for word in ("identify", "refer", "own", "zero"):
        assert word in result.output


@pytest.mark.parametrize("case", ["no datasets", "no samples", "no folder", "no checkpoint"])
def test_the_looks_command_exits_2_with_one_line(case, checkpoint, data_root, tmp_path):
    args = {"no datasets": [checkpoint, tmp_path], "no samples": [checkpoint, data_root],
            "no folder": [checkpoint, tmp_path / "missing"], "no checkpoint": [tmp_path, data_root]}[case]
    split = "dev" if case == "no samples" else "val"
    result = runner.invoke(cli(), ["looks", "--checkpoint", str(args[0]), "--data", str(args[1]), "--split", split,
                                   "--json"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output


# ---- the plan and the trainer -----------------------------------------------------------------


def plan_document(**keys) -> dict:
    return {"name": "p", "model": {"preset": "tiny"}, **keys,
            "stages": [{"name": "s", "datasets": {"vqa": {"ratio": 1}}, "global_batch": 2, "steps": 1,
                        "lr": {"max": 1e-3}}]}


def test_the_plan_takes_looks_every_and_looks_samples():
    assert (parse_plan(plan_document()).looks_every, parse_plan(plan_document()).looks_samples) == (0, 32)
    plan = parse_plan(plan_document(looks_every=50, looks_samples=8))
    assert (plan.looks_every, plan.looks_samples) == (50, 8)
    with pytest.raises(PlanError, match=r"^plan\.looks_every: must be 0"):
        parse_plan(plan_document(looks_every=-1))
    with pytest.raises(PlanError, match=r"^plan\.looks_samples: must be positive"):
        parse_plan(plan_document(looks_samples=0))


def test_the_trainer_adds_looks_losses_per_task_and_skips_a_root_without_val_pictures(model, data_root, tmp_path):
    plan = parse_plan(plan_document(looks_every=10, looks_samples=4))
    model.train()
    added = _looks_metrics(model, plan, {"data_root": str(data_root)}, world=1)
    assert model.training  # the probe leaves the trainer's mode as it found it
    model.eval()
    assert set(added["looks"]) == image_tasks(data_root, "val")
    assert all(set(v) == {"own", "deranged", "zero"} and v["own"] > 0 for v in added["looks"].values())
    assert _flat(added)[f"looks/{next(iter(added['looks']))}/own"] > 0  # Ray gets scalars
    assert _looks_metrics(model, plan, {"data_root": str(tmp_path)}, world=1) == {}


def test_the_looks_curve_draws_own_and_deranged_per_task():
    metrics = [{"global_step": s, "looks": {"refer": {"own": 7.0 - s / 10, "deranged": 7.0, "zero": 7.1},
                                             "vqa": {"own": 6.0, "deranged": None, "zero": 6.0}}} for s in (10, 20, 30)]
    image = PILImage.open(io.BytesIO(looks_curve_png(metrics))).convert("RGB")
    colours = {c for _, c in image.getcolors(1 << 20)}
    assert (0x1F, 0x77, 0xB4) in colours and (0xFF, 0x7F, 0x0E) in colours  # refer's and vqa's lines
    blank = PILImage.open(io.BytesIO(looks_curve_png([]))).convert("RGB")
    assert (0x1F, 0x77, 0xB4) not in {c for _, c in blank.getcolors(1 << 20)}


@pytest.mark.slow
def test_a_plan_with_looks_every_logs_looks_every_that_many_steps_and_at_stage_ends(ray_cluster, data_root, tmp_path):
    from training.launch import train

    doc = {"name": "looks-test", "model": {"preset": "tiny"}, "data_root": str(data_root), "checkpoint_every": 100,
           "log_every": 100, "looks_every": 4, "looks_samples": 2,
           "stages": [{"name": "first", "steps": 6, "global_batch": 4, "lr": {"max": 1e-3},
                       "datasets": {"refcoco": {"ratio": 1}, "vqa": {"ratio": 1}}},
                      {"name": "second", "steps": 3, "global_batch": 4, "lr": {"max": 1e-3},
                       "datasets": {"vqa": {"ratio": 1}}}]}
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps(doc))  # JSON is YAML
    result = train(plan, workers=2, storage=tmp_path / "runs")
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(m["global_step"], "looks" in m) for m in lines] == [(4, True), (6, True), (8, True), (9, True)]
    assert set(lines[-1]["looks"]) == image_tasks(data_root, "val")
    assert all(v["own"] > 0 and v["zero"] > 0 for v in lines[-1]["looks"].values())
