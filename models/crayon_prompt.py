"""CoLLaVO's Crayon Prompt: panoptic (semantic, numbering) maps -> embeddings at the visual tokens.

Pooling (``pool_crayon``): a crayon map (H, W, 2) at the image's full size is resized exactly like
the image (plain resize to S x S, nearest neighbour so indices stay indices), then each patch
takes the most frequent (semantic, numbering) pair of its pixels (ties: the smaller pair), so a
patch gets one instance, as CoLLaVO's 35 x 35 segmentation gives one per patch
(model-spec.md 1.3). Numbering beyond ``max_instances`` is clamped to it (the gotcha of 1.3).

Embedding (``CrayonPrompt``): ``z_p = E_sem[s_p] + E_num[n_p]`` per patch (tables of
num_classes + 1 and max_instances + 1 rows, 0 = unknown / none); the patch embeddings are merged
k at a time with the same raster-order ``merge_tokens`` as the visual tokens and mapped by a
Linear-GELU-Linear MLP to the LLM width, so crayon token t lines up with visual token t. The
result is added to the visual tokens (paper) and, with ``layer_rank > 0``, also feeds
``CrayonLayers``: CoLLaVO's released per-layer branch, ``y_i += s * B_seg(A_seg(c_i))`` at image
positions i on the target linears of every LLM layer (A_seg: D_llm -> r, B_seg: r -> D_out,
B_seg zero-initialised, s = alpha / r). The branch is skipped on cached generation steps (one new
token), as released. Parameters: embeddings (C + 1 + I + 1) d; MLP k d D + D + D^2 + D; per
target linear r (D_llm + D_out).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image as PILImage
from torch import Tensor, nn

from models.config import CrayonConfig
from models.connectors.mlp import MLPConnector

PEFT_PREFIX = "base_model.model."  #: where peft puts the wrapped model's modules


def pool_crayon(crayon: np.ndarray, image_size: int, patch_size: int, max_instances: int = 20) -> np.ndarray:
    """(H, W, 2) uint8 (semantic, numbering) -> (P, P, 2) int64 per patch, P = image_size / patch_size."""
    if crayon.ndim != 3 or crayon.shape[2] != 2:
        raise ValueError(f"a crayon map is (H, W, 2) semantic and numbering indices, got shape {crayon.shape}")
    pairs = crayon[..., 0].astype(np.int32) * 256 + crayon[..., 1].astype(np.int32)
    resized = np.asarray(PILImage.fromarray(pairs).resize((image_size, image_size), PILImage.Resampling.NEAREST))
    grid = image_size // patch_size
    blocks = resized.reshape(grid, patch_size, grid, patch_size).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    ordered = np.sort(blocks, axis=1)
    starts = np.ones_like(ordered, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    # run lengths of equal values in each sorted row; the longest run is the mode (first = smallest on ties)
    run_id = np.cumsum(starts, axis=1) - 1
    counts = np.zeros_like(ordered)
    np.add.at(counts, (np.arange(len(ordered))[:, None], run_id), 1)
    best_run = counts.argmax(axis=1)
    first = np.argmax(run_id == best_run[:, None], axis=1)
    mode = ordered[np.arange(len(ordered)), first].reshape(grid, grid)
    return np.stack([mode // 256, np.minimum(mode % 256, max_instances)], axis=-1).astype(np.int64)


class CrayonPrompt(nn.Module):
    """(B, P, P, 2) pooled indices -> (B, P*P / k, D_llm) crayon tokens aligned with the visual tokens."""

    def __init__(self, config: CrayonConfig, dim: int, llm_width: int, k: int) -> None:
        super().__init__()
        self.num_classes, self.max_instances = config.num_classes, config.max_instances
        self.semantic = nn.Embedding(config.num_classes + 1, dim)
        self.numbering = nn.Embedding(config.max_instances + 1, dim)
        self.mlp = MLPConnector(dim, llm_width, k)

    def forward(self, crayon: Tensor) -> Tensor:
        b = crayon.shape[0]
        semantic, numbering = crayon[..., 0].reshape(b, -1), crayon[..., 1].reshape(b, -1)
        if semantic.numel() and (int(semantic.max()) > self.num_classes or int(semantic.min()) < 0):
            raise ValueError(f"crayon semantic index outside 0..{self.num_classes}: "
                             f"{int(semantic.min())}..{int(semantic.max())}")
        z = self.semantic(semantic) + self.numbering(numbering.clamp(0, self.max_instances))
        return self.mlp(z)


class CrayonLayers(nn.Module):
    """The per-layer low-rank crayon branch, attached to an LLM's target linears by forward hooks."""

    def __init__(self, llm: nn.Module, config: CrayonConfig, llm_width: int) -> None:
        super().__init__()
        rank = config.layer_rank
        self.scale = (config.layer_alpha if config.layer_alpha is not None else rank) / rank
        self.branches = nn.ModuleDict()
        self._features: Tensor | None = None  #: (B, T, D_llm) crayon tokens at image positions, zeros elsewhere
        for name, module in _targets(llm, config.layer_targets):
            down, up = nn.Linear(llm_width, rank, bias=False), nn.Linear(rank, _out_features(module), bias=False)
            nn.init.zeros_(up.weight)
            key = name.removeprefix(PEFT_PREFIX).replace(".", "__")  # the same key with or without peft
            self.branches[key] = nn.Sequential(down, up)
            module.register_forward_hook(self._hook(key))
        if not self.branches:
            raise ValueError(f"crayon.layer_targets {list(config.layer_targets)} match no linear of the LLM")

    def _hook(self, key: str):  # noqa: ANN202 - a forward hook
        def add_branch(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
            features = self._features
            if features is None or output.shape[:2] != features.shape[:2]:  # text only, or a cached step
                return output
            return output + self.scale * self.branches[key](features.to(output.dtype))
        return add_branch

    def attach(self, features: Tensor | None) -> None:
        """Set (or clear, with None) the crayon features the hooks add for the next LLM call."""
        self._features = features


def _targets(llm: nn.Module, names: tuple[str, ...]) -> Iterator[tuple[str, nn.Module]]:
    """The outermost module of each target name (a peft or Dual-LoRA wrapper, not its inner base)."""
    for name, module in llm.named_modules():
        if name.rsplit(".", 1)[-1] in names and _out_features(module) is not None:
            yield name, module


def _out_features(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    base = getattr(module, "base_layer", None) or getattr(module, "base", None)
    return base.out_features if isinstance(base, nn.Linear) else getattr(module, "out_features", None)


def zeros_with(tokens: Tensor, mask: Tensor, shape: torch.Size) -> Tensor:
    """A (B, T, D) zero tensor with ``tokens`` (N, T_v, D) scattered at the True positions of ``mask``."""
    out = torch.zeros(shape, dtype=tokens.dtype, device=tokens.device)
    return out.masked_scatter(mask[..., None], tokens)
