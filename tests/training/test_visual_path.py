"""A guard on the whole visual path: a few hundred steps on a scene-level question must make the
model's answer depend on its own picture. Measured (model-looks-diagnosis.md): the tiny model
learns "is this indoors or outdoors?" from the picture within 100-400 steps; if pixels, image
masks or the splicing of visual tokens break, own and deranged losses stay equal and this fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets_builders.build import build_dataset
from datasets_builders.sample_world.world import write_sample_world
from models.build import build_model
from models.inputs import InputSpec
from models.presets import tiny
from training.collate import Collator
from training.looks import looks, probes
from training.optim import learning_rate, make_optimizer, set_learning_rate
from training.plan import Schedule

pytestmark = pytest.mark.slow
FAMILY = "question_type=is this"  #: "Is this indoors or outdoors?"
STEPS, BATCH = 200, 16


def test_a_short_training_on_indoor_outdoor_questions_makes_the_own_picture_clearly_better(tmp_path):
    torch.manual_seed(0)
    write_sample_world(tmp_path / "raw", images=300, seed=5, val_scenes=60)
    vqa = build_dataset("vqa", tmp_path / "raw" / "vqa", tmp_path / "vqa").root
    train = [p.fetched for p in probes({"vqa": vqa}, "train", per_task=10**6)
             if p.fetched.sample.meta.get("question_type") == "is this"]
    assert len(train) > 100
    model = build_model(tiny())
    before = looks(model, {"vqa": vqa}, split="val", per_task=400).row("vqa", FAMILY)
    model.set_trainable(("connector", "adapter", "llm"))
    model.train()
    optimizer = make_optimizer(model, 1e-3, 0.05)
    schedule = Schedule(max=1e-3, min=1e-5, warmup=20, start=1e-5)
    collator, rng = Collator(InputSpec.of(model), seed=0), np.random.default_rng(0)
    for step in range(STEPS):
        set_learning_rate(optimizer, learning_rate(schedule, step, STEPS))
        batch = collator([train[i] for i in rng.choice(len(train), BATCH, replace=False)])
        model(**batch.tensors).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    after = looks(model, {"vqa": vqa}, split="val", per_task=400).row("vqa", FAMILY)
    assert abs(before.gap) < 0.05, before  # untrained: the picture changes nothing
    assert after.paired >= 40 and after.interval[0] > 0.1 and after.gap > 0.2, after  # trained: it reads it
    assert after.own < after.zero, after  # and a blank picture is no better than the wrong one
