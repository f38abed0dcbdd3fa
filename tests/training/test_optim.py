"""Warm-up + cosine per stage, and AdamW's decay only on weight matrices."""

from __future__ import annotations

import math

import pytest

from models.build import build_model
from models.presets import tiny
from training.optim import learning_rate, make_optimizer
from training.plan import Schedule


def test_the_rate_rises_linearly_over_the_warmup_then_follows_a_cosine_to_the_floor():
    schedule = Schedule(max=1e-3, min=1e-5, warmup=10, start=1e-6)
    assert learning_rate(schedule, 0, 110) == pytest.approx(1e-6)
    assert learning_rate(schedule, 5, 110) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    assert learning_rate(schedule, 10, 110) == pytest.approx(1e-3)
    midway = 10 + (110 - 1 - 10) / 2
    assert learning_rate(schedule, midway, 110) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert learning_rate(schedule, 109, 110) == pytest.approx(1e-5)  # the stage's last step is at the floor
    rates = [learning_rate(schedule, s, 110) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert not math.isnan(learning_rate(Schedule(max=1e-3), 0, 1))


def test_weight_decay_skips_biases_norms_and_vectors():
    model = build_model(tiny())
    optimizer = make_optimizer(model, 1e-3, 0.05)
    decay, no_decay = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(p.ndim < 2 or names[id(p)].endswith(".bias") or "norm" in names[id(p)] for p in no_decay["params"])
    model.set_trainable(())
    with pytest.raises(ValueError, match="nothing to train"):
        make_optimizer(model, 1e-3, 0.05)
