"""Dual-LoRA: a LoRA variant with a gated skill space, wrapped around frozen linears.

Why: vanilla LoRA adds one low-rank update per linear. Dual-LoRA splits the rank space in two: a *skill*
space S (holistic knowledge, layer-normed) and a *task* space T (ReLU, an input-dependent gate that picks
skill directions, the local response LoRA-MoE gets from routing). For a frozen W (d_out x d_in), bias b:

    h = W x + b + s * B( LN_r(S dropout(x)) * ReLU(T x) ),    s = alpha / r

Shapes: x (..., d_in); S, T (r x d_in); LN over the r dims; B (d_out x r); h (..., d_out).
Dropout is on the S branch only. Init: S, T kaiming-uniform (a=sqrt(5)), B zeros, so h = W x + b at step 0.

The product is element-wise in rank space and depends on x, so the update cannot be folded into W: the
module stays at inference and costs more than LoRA there (one more r x d_in matmul, a LayerNorm, a gate).
Per module it adds 2 r d_in + r d_out + 2 r parameters (393,280 for 4096 -> 4096 at r = 32).
Defaults follow the paper's code: r = 32, alpha = 64, dropout 0.05, on q_proj and v_proj (see
docs/model-spec.md sections 2.3 and 2.6). We wrap modules ourselves instead of using peft internals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

DEFAULT_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")
_ADAPTER_PARTS: tuple[str, ...] = ("skill", "task", "norm", "up")


def added_parameters(d_in: int, d_out: int, r: int) -> int:
    """Parameters one Dual-LoRA module adds: S and T (r x d_in each), B (d_out x r), LayerNorm (2 r)."""
    return 2 * r * d_in + r * d_out + 2 * r


class DualLoRALinear(nn.Module):
    """Wraps a frozen nn.Linear: base(x) + scale * up(norm(skill(dropout(x))) * relu(task(x)))."""

    def __init__(self, base: nn.Linear, r: int = 32, alpha: float = 64.0, dropout: float = 0.05) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"DualLoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if r <= 0:
            raise ValueError(f"rank r must be positive, got {r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.base = base
        self.base.requires_grad_(False)
        d_in, d_out = base.in_features, base.out_features
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.r = r
        self.scale = alpha / r
        self.skill = nn.Linear(d_in, r, bias=False, **factory)
        self.task = nn.Linear(d_in, r, bias=False, **factory)
        self.norm = nn.LayerNorm(r, **factory)
        self.up = nn.Linear(r, d_out, bias=False, **factory)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_adapter()

    def reset_adapter(self) -> None:
        """S, T like nn.Linear (kaiming-uniform, a=sqrt(5)); B zero so the wrapper starts as the base."""
        nn.init.kaiming_uniform_(self.skill.weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.task.weight, a=math.sqrt(5))
        self.norm.reset_parameters()
        nn.init.zeros_(self.up.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        xa = x.to(self.skill.weight.dtype)
        skill = self.norm(self.skill(self.dropout(xa)))
        gate = torch.relu(self.task(xa))
        return out + (self.scale * self.up(skill * gate)).to(out.dtype)

    def merge(self) -> None:
        raise NotImplementedError(
            "Dual-LoRA cannot be merged into the base weight: its update depends on the input "
            "(skill ⊙ ReLU(task x)); keep the module, or export without merging"
        )

    def extra_repr(self) -> str:
        return f"r={self.r}, scale={self.scale:g}"


def apply_dual_lora(
    model: nn.Module,
    target_modules: Sequence[str],
    *,
    r: int = 32,
    alpha: float = 64.0,
    dropout: float = 0.05,
) -> list[str]:
    """Replace every nn.Linear whose attribute name (last dotted part) is in target_modules with a DualLoRALinear
    around it; freeze the base weights of those linears; returns the sorted qualified names replaced.

    Other parameters keep their requires_grad (the caller decides what else trains, e.g. the projector).
    Linears already inside a DualLoRALinear are skipped, so applying twice does not nest adapters.
    """
    targets = set(target_modules)
    inside_adapter = {
        id(sub) for m in model.modules() if isinstance(m, DualLoRALinear) for sub in m.modules() if sub is not m
    }
    found = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and id(module) not in inside_adapter and name.rsplit(".", 1)[-1] in targets
    ]
    if not found:
        raise ValueError(f"no nn.Linear named any of {sorted(targets)} in {type(model).__name__}")
    for name in found:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attr, DualLoRALinear(getattr(parent, attr), r=r, alpha=alpha, dropout=dropout))
    return sorted(found)


def dual_lora_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The adapter's own parameters (skill, task, norm, up) of every DualLoRALinear: what is trained and saved."""
    for name, module in model.named_modules():
        if isinstance(module, DualLoRALinear):
            for part in _ADAPTER_PARTS:
                prefix = f"{name}.{part}" if name else part
                yield from getattr(module, part).named_parameters(prefix=prefix)
