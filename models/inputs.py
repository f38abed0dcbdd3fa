"""What a batch needs from the model, without the model: picklable, for data-loader workers.

``InputSpec`` carries the tokenizer, the visual-token count, the text budget and the image side,
normalisation and patch grid; ``pixels`` and ``crayons`` turn PIL images and crayon maps into the
tensors ``GroundedVLM.forward`` takes, exactly as ``chat`` and ``ias`` do for single images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from models.crayon_prompt import pool_crayon


@dataclass(frozen=True)
class InputSpec:
    tokenizer: Any
    visual_tokens: int
    max_text_tokens: int
    image_size: int
    patch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crayon: bool  #: the model reads crayon maps
    max_instances: int = 20

    @classmethod
    def of(cls, model: Any) -> InputSpec:
        tower = model.vision
        return cls(model.tokenizer, model.visual_tokens, model.config.max_text_tokens, tower.image_size,
                   tower.patch_size, tuple(tower.config.mean), tuple(tower.config.std), model.crayon is not None,
                   model.config.crayon.max_instances)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def pixels(self, images: Sequence[PILImage.Image]) -> torch.Tensor:
        return pixels(images, self.image_size, self.mean, self.std)

    def crayons(self, maps: Sequence[np.ndarray | None]) -> torch.Tensor | None:
        """(N, P, P, 2) pooled crayon maps (an all-unknown map where an image has none); None without crayon."""
        if not self.crayon:
            return None
        pooled = [np.zeros((self.grid, self.grid, 2), np.int64) if m is None else
                  pool_crayon(m, self.image_size, self.patch_size, self.max_instances) for m in maps]
        return torch.from_numpy(np.stack(pooled))


def pixels(images: Sequence[PILImage.Image], side: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, 3, S, S): MiniGPT-v2's plain bicubic resize (no crop), then mean/std normalisation."""
    mean_, std_ = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    arrays = [(np.asarray(im.convert("RGB").resize((side, side), PILImage.Resampling.BICUBIC),
                          dtype=np.float32) / 255.0 - mean_) / std_ for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
