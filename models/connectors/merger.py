"""MiniGPT-v2's token merger: k consecutive patch tokens concatenated, then one linear projection.

MiniGPT-v2 reshapes EVA ViT-g's (B, 1024, 1408) patch tokens to (B, 256, 5632) and projects them
with one Linear(5632 -> 4096): each visual token is **k = 4 consecutive tokens in raster order**,
i.e. a horizontal 1x4 strip of one patch row (32 columns = 8 strips per row), not a 2x2 block
(minigptv2-data-spec.md 1). ``merge_tokens`` is that reshape; the crayon prompt pools its patch
embeddings with the same function, so crayon token t describes the same strip as visual token t.
"""

from __future__ import annotations

from torch import Tensor, nn


def merge_tokens(tokens: Tensor, k: int) -> Tensor:
    """(B, N, D) -> (B, N / k, k * D): token t is tokens[k t : k t + k] concatenated."""
    b, n, d = tokens.shape
    if n % k:
        raise ValueError(f"cannot merge {n} patch tokens in groups of {k}: {n} is not a multiple of {k}")
    return tokens.reshape(b, n // k, k * d)


class Merger(nn.Module):
    """merge_tokens, then Linear(k * D_vision -> D_llm). Parameters: k D_v D_llm + D_llm."""

    def __init__(self, vision_width: int, llm_width: int, k: int = 4) -> None:
        super().__init__()
        self.k = k
        self.proj = nn.Linear(k * vision_width, llm_width)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.proj(merge_tokens(tokens, self.k))
