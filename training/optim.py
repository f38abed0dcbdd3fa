"""AdamW and warm-up + cosine, as MiniGPT-v2 trains (minigptv2-data-spec.md 9.2).

Weight decay applies to weight matrices only: biases, norms and every parameter with fewer than
two dimensions are excluded. The learning rate rises linearly from ``start`` to ``max`` over
``warmup`` steps, then follows a cosine from ``max`` down to ``min`` at the stage's last step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.plan import Schedule


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or name.endswith(".bias") or "norm" in name else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("nothing to train: the stage's trainable parts have no parameters in this model")
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999))


def learning_rate(schedule: Schedule, step: int, steps: int) -> float:
    """The rate at ``step`` (0-based) of a stage of ``steps`` steps."""
    if step < schedule.warmup:
        return schedule.start + (schedule.max - schedule.start) * step / max(schedule.warmup, 1)
    span = max(steps - 1 - schedule.warmup, 1)
    progress = min((step - schedule.warmup) / span, 1.0)
    return schedule.min + 0.5 * (schedule.max - schedule.min) * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate
