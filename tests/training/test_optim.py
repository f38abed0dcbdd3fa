"""Warm-up + cosine per stage, AdamW's decay only on weight matrices, and parts with their own rate."""

from __future__ import annotations

import io
import math

import pytest
import torch

from models.build import build_model
from models.presets import tiny
from training.optim import (learning_rate, load_optimizer_state, make_optimizer, part_learning_rates,
                            set_learning_rate)
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


# ---- parts with their own peak -------------------------------------------------------------

SPLIT = Schedule(max=3e-4, min=1e-5, warmup=20, start=1e-5, parts={"connector": 3e-3})
STEPS = 100


def _split_model():  # noqa: ANN202 - a GroundedVLM
    model = build_model(tiny())
    model.set_trainable(("connector", "llm"))
    return model


def _rate_of(optimizer, model, part: str) -> set[float]:  # noqa: ANN001
    """The rates the groups holding ``part``'s parameters train at (one, if the part is in one rate class)."""
    ids = {id(p) for _, p in model.part_parameters(part)}
    return {g["lr"] for g in optimizer.param_groups if any(id(p) in ids for p in g["params"])}


@pytest.mark.parametrize("step", [0, 10, 20, 60, 99], ids=["start", "warm-up", "peak", "cosine", "floor"])
def test_a_part_with_its_own_peak_follows_the_same_curve_scaled(step):
    model = _split_model()
    optimizer = make_optimizer(model, SPLIT.max, 0.05, SPLIT.parts)
    base = learning_rate(SPLIT, step, STEPS)
    set_learning_rate(optimizer, base)
    (llm,), (connector,) = _rate_of(optimizer, model, "llm"), _rate_of(optimizer, model, "connector")
    assert llm == pytest.approx(base)
    assert connector == pytest.approx(10 * llm)
    assert part_learning_rates(optimizer) == {"connector": pytest.approx(10 * base)}
    if step == 20:
        assert connector == pytest.approx(3e-3)
    if step == 0:
        assert connector == pytest.approx(1e-4)  # start scales too


def test_every_trainable_parameter_is_in_exactly_one_group_with_its_parts_rate():
    model = _split_model()
    optimizer = make_optimizer(model, SPLIT.max, 0.05, SPLIT.parts)
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(set(grouped)) and sorted(grouped) == sorted(trainable)
    connector = {id(p) for _, p in model.part_parameters("connector")}
    for group in optimizer.param_groups:
        in_connector = {id(p) in connector for p in group["params"]}
        assert in_connector == ({group["part"] == "connector"} if group["params"] else set())
    assert [(g["part"], g["weight_decay"]) for g in optimizer.param_groups] == [
        (None, 0.05), (None, 0.0), ("connector", 0.05), ("connector", 0.0)]


def test_parameters_outside_every_part_still_train_at_the_base_rate():
    model = _split_model()
    model.extra = torch.nn.Linear(2, 2)  # in no part
    optimizer = make_optimizer(model, SPLIT.max, 0.05, SPLIT.parts)
    set_learning_rate(optimizer, 1e-4)
    extra = {id(model.extra.weight), id(model.extra.bias)}
    rates = [g["lr"] for g in optimizer.param_groups if extra & {id(p) for p in g["params"]}]
    assert rates == [pytest.approx(1e-4)] * 2  # the weight decays, the bias does not


def test_without_part_rates_the_optimizer_keeps_its_two_groups():
    """So optimizer states saved before part rates existed still load."""
    optimizer = make_optimizer(_split_model(), 1e-3, 0.05)
    assert [g["part"] for g in optimizer.param_groups] == [None, None]
    set_learning_rate(optimizer, 5e-4)
    assert [g["lr"] for g in optimizer.param_groups] == [5e-4, 5e-4] and part_learning_rates(optimizer) == {}


def _trained_state(model, optimizer) -> dict:  # noqa: ANN001
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p)
    optimizer.step()
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # as training.checkpoint reads it


def test_an_optimizer_state_with_part_rates_round_trips():
    model = _split_model()
    optimizer = make_optimizer(model, SPLIT.max, 0.05, SPLIT.parts)
    set_learning_rate(optimizer, learning_rate(SPLIT, 30, STEPS))
    state = _trained_state(model, optimizer)
    again = make_optimizer(model, SPLIT.max, 0.05, SPLIT.parts)
    load_optimizer_state(again, state)
    assert [(g["part"], g["scale"], g["lr"]) for g in again.param_groups] == [
        (g["part"], g["scale"], g["lr"]) for g in optimizer.param_groups]
    for a, b in zip(again.state_dict()["state"].values(), optimizer.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    set_learning_rate(again, 1e-4)
    assert part_learning_rates(again) == {"connector": pytest.approx(1e-3)}


def test_the_plan_not_the_checkpoint_sets_the_scales_and_changed_parts_are_refused():
    model = _split_model()
    state = _trained_state(model, make_optimizer(model, 1e-3, 0.05))  # saved without part rates
    for group in state["param_groups"]:
        del group["part"], group["scale"]  # as a checkpoint from before part rates holds them
    plain = make_optimizer(model, 1e-3, 0.05)
    load_optimizer_state(plain, state)
    set_learning_rate(plain, 2e-4)
    assert [g["lr"] for g in plain.param_groups] == [2e-4, 2e-4]
    split = make_optimizer(model, SPLIT.max, 0.05, SPLIT.parts)
    with pytest.raises(ValueError, match="lr.parts changed mid-stage"):
        load_optimizer_state(split, state)
    split_state = _trained_state(model, make_optimizer(model, SPLIT.max, 0.05, SPLIT.parts))
    faster = make_optimizer(model, SPLIT.max, 0.05, {"connector": 6e-3})  # the plan's rate changed since
    load_optimizer_state(faster, split_state)
    set_learning_rate(faster, 1e-4)
    assert part_learning_rates(faster) == {"connector": pytest.approx(2e-3)}


def test_a_parameter_in_two_parts_is_refused():
    model = _split_model()
    shared = next(p for _, p in model.part_parameters("connector"))
    model.part_parameters = lambda part: iter([(f"{part}.w", shared)])
    with pytest.raises(ValueError, match="belongs to both connector and llm"):
        make_optimizer(model, 1e-3, 0.05, {"connector": 1e-2, "llm": 1e-3})
