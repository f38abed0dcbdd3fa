"""AdamW and warm-up + cosine, as MiniGPT-v2 trains (minigptv2-data-spec.md 9.2).

Weight decay applies to weight matrices only: biases, norms and every parameter with fewer than
two dimensions are excluded. The learning rate rises linearly from ``start`` to ``max`` over
``warmup`` steps, then follows a cosine from ``max`` down to ``min`` at the stage's last step.

A part given its own peak (``lr.parts`` in a plan) gets param groups of its own whose rate is the
stage's rate times (its peak / max) at every step: the same curve, scaled. Each group records its
``part`` (None: the base rate) and ``scale``. Groups come in a fixed order (base, then the parts
in ``PARTS`` order; decay before no-decay), so a saved optimizer state loads into the next
process's optimizer; a stage without part rates has just the two base groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from models.grounded_vlm import PARTS
from training.plan import Schedule

_OWN_KEYS = ("part", "scale")  #: what a group carries beyond torch's keys; the plan, not a checkpoint, sets them


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   part_rates: Mapping[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; ``part_rates`` (part -> peak) give those parts their own rate."""
    part_rates = dict(part_rates or {})
    if part_rates and not lr > 0:
        raise ValueError(f"part rates scale the base rate, which must be positive, got {lr}")
    own_part = _own_part_of_each_parameter(model, part_rates)
    groups: dict[tuple[str | None, bool], list[nn.Parameter]] = {
        (part, decay): [] for part in (None, *(p for p in PARTS if p in part_rates)) for decay in (True, False)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decays = not (param.ndim < 2 or name.endswith(".bias") or "norm" in name)
            groups[own_part.get(id(param)), decays].append(param)
    if not any(groups.values()):
        raise ValueError("nothing to train: the stage's trainable parts have no parameters in this model")
    return torch.optim.AdamW(
        [{"params": params, "weight_decay": weight_decay if decays else 0.0, "part": part,
          "scale": 1.0 if part is None else part_rates[part] / lr}
         for (part, decays), params in groups.items() if params or part is None],
        lr=lr, betas=(0.9, 0.999))


def _own_part_of_each_parameter(model: nn.Module, part_rates: Mapping[str, float]) -> dict[int, str]:
    """id(parameter) -> the part whose own rate it takes; a parameter claimed by two parts is a bug."""
    owner: dict[int, str] = {}
    for part in part_rates:
        for name, param in model.part_parameters(part):
            if owner.setdefault(id(param), part) != part:
                raise ValueError(f"{name} belongs to both {owner[id(param)]} and {part}; its rate would be ambiguous")
    return owner


def learning_rate(schedule: Schedule, step: int, steps: int) -> float:
    """The base rate at ``step`` (0-based) of a stage of ``steps`` steps."""
    if step < schedule.warmup:
        return schedule.start + (schedule.max - schedule.start) * step / max(schedule.warmup, 1)
    span = max(steps - 1 - schedule.warmup, 1)
    progress = min((step - schedule.warmup) / span, 1.0)
    return schedule.min + 0.5 * (schedule.max - schedule.min) * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """The base ``rate`` for the base groups, scaled for each part with its own peak."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get("scale", 1.0)


def part_learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The rate each part with its own peak trains at now (empty without part rates)."""
    return {group["part"]: group["lr"] for group in optimizer.param_groups if group.get("part") is not None}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``load_state_dict``, keeping this plan's part scales: torch would restore the saved groups' keys
    (from an older plan, or none at all from a checkpoint before part rates)."""
    own = [{key: group[key] for key in _OWN_KEYS} for group in optimizer.param_groups]
    saved = [group.get("part") for group in state["param_groups"]]
    if saved != [o["part"] for o in own]:
        raise ValueError(f"the saved optimizer has groups for parts {saved}, this stage's has "
                         f"{[o['part'] for o in own]}: were the plan's lr.parts changed mid-stage?")
    optimizer.load_state_dict(state)
    for group, keys in zip(optimizer.param_groups, own):
        group.update(keys)
