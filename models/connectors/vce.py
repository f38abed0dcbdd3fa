"""Visual Cue Enhancement (VCE, arXiv 2411.12787), the projector-side half of VCE + Dual-LoRA.

Why: the usual projector only sees one high-level CLIP map, which has lost fine local detail. VCE
enriches that map, before the projector MLP, with local cues taken from several levels of the same
vision tower, keeping the token count unchanged (spec `model-spec.md` section 2.2).

What is implemented (shapes: B batch, N = H*W tokens, D width, H x W patch grid, M heads,
L levels, K points, D_h = D / M):

    f_v = LayerNorm(f_a + f*)

- f_a (B, N, D): the anchor, CLIP hidden state -2 with CLS dropped. The paper's choice; the
  released code's ``query_layer = -1`` indexes the stacked [-2, -8, -14, -20] list and so picks
  -20, which we treat as a bug.
- Levels F_l (B, N, D), l < L: hidden states -2, -8, -14, -20 (the anchor level included), all on
  the same H x W grid.
- f* is multi-scale deformable cross-attention. For query q, head m, level l, point k:
  reference p_q = centre of q's own patch, normalised (x, y) in (0, 1), the same on every level;
  offsets dp = Linear_off(LN_q(f_a,q)) in patch units, location p_q + dp / (W, H);
  weights A = softmax over the L*K (level, point) pairs of Linear_att(LN_q(f_a,q)), per head;
  values V_l = Linear_v(LN_f(F_l)) split into M heads, sampled bilinearly with ``F.grid_sample``
  (align_corners=False, zero padding);
  f*_q = Linear_o(concat_m sum_l sum_k A_mlk * V_l^(m)(location)).
- Normalisation: the paper's normalised sum. The released code computes ``self.norm(x)`` but
  discards it, feeding the un-normalised f_a + f* to the projector; we do not copy that.
- Init: value/output projections xavier_uniform, bias 0; offset weights 0, offset bias = for head m
  the direction at angle 2*pi*m/M, (cos, sin) divided by its max-abs component, times (k + 1) for
  point k, same on every level; attention weight and bias 0 (uniform attention at the start);
  LayerNorms default (weight 1, bias 0).

Parameters: offsets D*(2MLK) + 2MLK, attention D*(MLK) + MLK, value D^2 + D, output D^2 + D,
three LayerNorms (LN_q, LN_f, final) 3 * 2D. At D=1024, L=4, M=16, K=4:
524,800 + 262,400 + 1,049,600 + 1,049,600 + 6,144 = 2,892,544 (about 2.89 M).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class VCE(nn.Module):
    """LayerNorm(anchor + multi-scale deformable cross-attention over L same-grid feature maps)."""

    def __init__(self, dim: int, levels: int = 4, heads: int = 16, points: int = 4) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.dim, self.levels, self.heads, self.points = dim, levels, heads, points
        self.query_norm = nn.LayerNorm(dim)  # LN_q
        self.value_norm = nn.LayerNorm(dim)  # LN_f
        self.norm = nn.LayerNorm(dim)  # final LayerNorm(f_a + f*)
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deformable-DETR style initialisation described in the module docstring."""
        m, lv, k = self.heads, self.levels, self.points
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(m, dtype=torch.float64) * (2.0 * math.pi / m)
        ring = torch.stack([angles.cos(), angles.sin()], -1)  # (M, 2)
        ring = ring / ring.abs().max(-1, keepdim=True).values
        scale = torch.arange(1, k + 1, dtype=torch.float64).view(1, 1, k, 1)
        bias = ring.view(m, 1, 1, 2).repeat(1, lv, k, 1) * scale  # (M, L, K, 2)
        self.sampling_offsets.bias.copy_(bias.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)
        for ln in (self.query_norm, self.value_norm, self.norm):
            ln.reset_parameters()

    def forward(self, anchor: Tensor, levels: Sequence[Tensor] | Tensor, grid: tuple[int, int]) -> Tensor:
        """anchor (B, N, D) with N = H*W patch tokens in raster order (CLS already dropped);
        levels: L maps (B, N, D) each (or one (B, L, N, D) tensor), the anchor level included among them;
        grid = (H, W). Returns (B, N, D): LayerNorm(anchor + deformable_attention(anchor, levels))."""
        h, w = grid
        if anchor.dim() != 3 or anchor.shape[-1] != self.dim:
            raise ValueError(f"anchor must be (B, N, {self.dim}), got {tuple(anchor.shape)}")
        b, n, d = anchor.shape
        if n != h * w:
            raise ValueError(f"expected N = H*W = {h}*{w} = {h * w} tokens, got {n}")
        feats = levels if isinstance(levels, Tensor) else torch.stack(list(levels), 1)
        if feats.dim() != 4 or feats.shape[1] != self.levels:
            raise ValueError(f"expected {self.levels} levels of shape (B, N, D), got {tuple(feats.shape)}")
        if feats.shape != (b, self.levels, n, d):
            raise ValueError(f"expected levels of shape {(b, self.levels, n, d)}, got {tuple(feats.shape)}")
        m, lv, k, dh = self.heads, self.levels, self.points, d // self.heads

        query = self.query_norm(anchor)
        offsets = self.sampling_offsets(query).view(b, n, m, lv, k, 2)
        attn = self.attention_weights(query).view(b, n, m, lv * k).softmax(-1).view(b, n, m, lv, k)

        # Reference points: patch centres ((j + 0.5) / W, (i + 0.5) / H), raster order.
        ys = (torch.arange(h, device=anchor.device, dtype=anchor.dtype) + 0.5) / h
        xs = (torch.arange(w, device=anchor.device, dtype=anchor.dtype) + 0.5) / w
        ref = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(n, 1, 1, 1, 2)
        size = torch.tensor([w, h], device=anchor.device, dtype=anchor.dtype)
        loc = ref + offsets / size  # (B, N, M, L, K, 2), (x, y) in [0, 1] inside the map
        sample_grid = (2.0 * loc - 1.0).permute(0, 3, 2, 1, 4, 5).reshape(b * lv * m, n, k, 2)

        value = self.value_proj(self.value_norm(feats))  # (B, L, N, D)
        value = value.view(b, lv, h, w, m, dh).permute(0, 1, 4, 5, 2, 3).reshape(b * lv * m, dh, h, w)
        sampled = F.grid_sample(  # (B*L*M, D_h, N, K)
            value, sample_grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        weights = attn.permute(0, 3, 2, 1, 4).reshape(b * lv * m, 1, n, k)
        out = (sampled * weights).sum(-1).view(b, lv, m, dh, n).sum(1)  # (B, M, D_h, N)
        out = self.output_proj(out.permute(0, 3, 1, 2).reshape(b, n, d))
        return self.norm(anchor + out)
