"""VCE: deformable cross-attention against a hand-written loop, init, locality, parameter count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from models.connectors.vce import VCE

B, H, W, D, M, L, K = 1, 2, 3, 4, 2, 2, 2


def _bilinear(fmap: Tensor, x: float, y: float) -> Tensor:
    """fmap (H, W, C); (x, y) normalised with 0 and 1 at the outer edges; zeros outside the map."""
    h, w, _ = fmap.shape
    px, py = x * w - 0.5, y * h - 0.5  # pixel coordinates, centre of pixel j at j
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros_like(fmap[0, 0])
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yi < h and 0 <= xi < w:
                out = out + wx * wy * fmap[yi, xi]
    return out


def _reference(vce: VCE, anchor: Tensor, levels: Tensor, h: int, w: int) -> Tensor:
    """The spec's formula, one (batch, query, head, level, point) at a time."""
    b, n, d = anchor.shape
    m, lv, k, dh = vce.heads, vce.levels, vce.points, d // vce.heads
    q = F.layer_norm(anchor, (d,), vce.query_norm.weight, vce.query_norm.bias)
    off = (q @ vce.sampling_offsets.weight.T + vce.sampling_offsets.bias).view(b, n, m, lv, k, 2)
    logits = (q @ vce.attention_weights.weight.T + vce.attention_weights.bias).view(b, n, m, lv * k)
    v = F.layer_norm(levels, (d,), vce.value_norm.weight, vce.value_norm.bias)
    v = v @ vce.value_proj.weight.T + vce.value_proj.bias  # (B, L, N, D)
    fstar = torch.zeros_like(anchor)
    for bi in range(b):
        for qi in range(n):
            cx, cy = (qi % w + 0.5) / w, (qi // w + 0.5) / h
            heads = []
            for mi in range(m):
                a = torch.exp(logits[bi, qi, mi]) / torch.exp(logits[bi, qi, mi]).sum()
                acc = torch.zeros(dh, dtype=anchor.dtype)
                for li in range(lv):
                    fmap = v[bi, li].view(h, w, d)[..., mi * dh : (mi + 1) * dh]
                    for ki in range(k):
                        dx, dy = off[bi, qi, mi, li, ki].tolist()
                        acc = acc + a[li * k + ki] * _bilinear(fmap, cx + dx / w, cy + dy / h)
                heads.append(acc)
            fstar[bi, qi] = torch.cat(heads) @ vce.output_proj.weight.T + vce.output_proj.bias
    return F.layer_norm(anchor + fstar, (d,), vce.norm.weight, vce.norm.bias)


def _tiny(seed: int = 0) -> tuple[VCE, Tensor, Tensor]:
    torch.manual_seed(seed)
    vce = VCE(D, levels=L, heads=M, points=K).double()
    anchor = torch.randn(B, H * W, D, dtype=torch.float64)
    levels = torch.randn(B, L, H * W, D, dtype=torch.float64)
    return vce, anchor, levels


def test_output_matches_a_hand_written_loop_with_bilinear_interpolation_for_random_weights() -> None:
    vce, anchor, levels = _tiny()
    with torch.no_grad():
        for p in vce.parameters():
            p.copy_(torch.randn_like(p))  # offsets of about +-2 patches: off-centre, some outside
    torch.testing.assert_close(vce(anchor, levels, (H, W)), _reference(vce, anchor, levels, H, W))


def test_samples_on_centres_and_midpoints_read_exactly_those_patches() -> None:
    vce, anchor, levels = _tiny(1)
    with torch.no_grad():
        vce.value_proj.weight.copy_(torch.eye(D))
        vce.output_proj.weight.copy_(torch.eye(D))
        vce.sampling_offsets.weight.zero_()
        bias = torch.zeros(M, L, K, 2, dtype=torch.float64)
        bias[:, :, 0] = torch.tensor([1.0, 0.0])  # point 0: centre of the right-hand neighbour
        bias[:, :, 1] = torch.tensor([0.0, 0.5])  # point 1: midway to the patch below
        vce.sampling_offsets.bias.copy_(bias.flatten())
        vce.attention_weights.weight.zero_()
        vce.attention_weights.bias.copy_(torch.randn(M * L * K, dtype=torch.float64))
    a = vce.attention_weights.bias.view(M, L * K).softmax(-1).view(M, L, K)
    vals = F.layer_norm(levels, (D,)).view(B, L, H, W, D)
    expected = torch.zeros(B, H * W, D, dtype=torch.float64)
    zero = torch.zeros(D // M, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            for m in range(M):
                sl = slice(m * D // M, (m + 1) * D // M)
                for li in range(L):
                    right = vals[0, li, i, j + 1, sl] if j + 1 < W else zero  # off the map: zero padding
                    below = vals[0, li, i + 1, j, sl] if i + 1 < H else zero
                    mid = 0.5 * (vals[0, li, i, j, sl] + below)
                    expected[0, i * W + j, sl] += a[m, li, 0] * right + a[m, li, 1] * mid
    torch.testing.assert_close(vce(anchor, levels, (H, W)), F.layer_norm(anchor + expected, (D,)))
    torch.testing.assert_close(vce(anchor, levels, (H, W)), _reference(vce, anchor, levels, H, W))


def test_zero_offsets_and_uniform_attention_read_each_patch_itself_averaged_over_levels() -> None:
    vce, anchor, levels = _tiny(2)
    with torch.no_grad():
        vce.sampling_offsets.bias.zero_()
    v = vce.value_proj(vce.value_norm(levels)).mean(1)  # (B, N, D): own patch, mean over levels
    expected = vce.norm(anchor + vce.output_proj(v))
    torch.testing.assert_close(vce(anchor, levels, (H, W)), expected)


def test_initialisation_is_a_ring_of_offsets_scaled_by_point_index_with_uniform_attention() -> None:
    vce = VCE(8, levels=3, heads=4, points=2)
    bias = vce.sampling_offsets.bias.view(4, 3, 2, 2)
    ring = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for k in range(2):
        for lv in range(3):
            torch.testing.assert_close(bias[:, lv, k], ring * (k + 1), atol=1e-6, rtol=0)
    diag = VCE(8, levels=1, heads=8, points=1).sampling_offsets.bias.view(8, 2)
    torch.testing.assert_close(diag[1], torch.tensor([1.0, 1.0]))  # 45 degrees: max-abs normalised
    assert torch.count_nonzero(vce.sampling_offsets.weight) == 0
    assert torch.count_nonzero(vce.attention_weights.weight) == 0
    assert torch.count_nonzero(vce.attention_weights.bias) == 0
    assert torch.count_nonzero(vce.value_proj.bias) == 0 and torch.count_nonzero(vce.output_proj.bias) == 0


def test_parameter_count_at_clip_large_width_matches_the_spec_arithmetic() -> None:
    vce = VCE(1024, levels=4, heads=16, points=4)
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(vce.sampling_offsets) == 524_800
    assert count(vce.attention_weights) == 262_400
    assert count(vce.value_proj) == 1_049_600 and count(vce.output_proj) == 1_049_600
    assert count(vce.query_norm) + count(vce.value_norm) + count(vce.norm) == 6_144
    assert count(vce) == 2_892_544


def test_gradients_reach_every_parameter_and_the_inputs_and_the_shape_is_kept() -> None:
    torch.manual_seed(3)
    vce = VCE(32, levels=4, heads=4, points=3)
    anchor = torch.randn(2, 20, 32, requires_grad=True)
    levels = [torch.randn(2, 20, 32, requires_grad=True) for _ in range(4)]
    out = vce(anchor, levels, (4, 5))
    assert out.shape == (2, 20, 32)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in vce.named_parameters():
        # At init LN_q is read only through the zero offset/attention weights, so its gradient is 0 there;
        # those zero weights themselves do get a gradient, so training leaves the init.
        assert p.grad is not None and (p.grad.abs().sum() > 0) == (not name.startswith("query_norm")), name
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in [anchor, *levels])
    torch.testing.assert_close(vce(anchor, torch.stack(levels, 1), (4, 5)), out)

    vce.zero_grad(set_to_none=True)
    with torch.no_grad():
        vce.sampling_offsets.weight.normal_(std=0.1)
        vce.attention_weights.weight.normal_(std=0.1)
    out = vce(anchor, levels, (4, 5))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in vce.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_shapes_raise_value_errors_naming_expected_and_received() -> None:
    with pytest.raises(ValueError, match=r"dim \(10\).*heads \(4\)"):
        VCE(10, heads=4)
    vce = VCE(8, levels=2, heads=2, points=1)
    anchor = torch.randn(1, 6, 8)
    with pytest.raises(ValueError, match=r"2 levels.*\(1, 3, 6, 8\)"):
        vce(anchor, [anchor, anchor, anchor], (2, 3))
    with pytest.raises(ValueError, match=r"2\*4 = 8.*got 6"):
        vce(anchor, [anchor, anchor], (2, 4))
    with pytest.raises(ValueError, match=r"\(1, 2, 6, 8\).*\(1, 2, 5, 8\)"):
        vce(anchor, [anchor[:, :5], anchor[:, :5]], (2, 3))


def test_a_query_depends_only_on_the_patches_its_samples_land_on() -> None:
    torch.manual_seed(4)
    h, w = 4, 4
    vce = VCE(8, levels=2, heads=2, points=1).double()
    anchor = torch.randn(1, h * w, 8, dtype=torch.float64)
    levels = torch.randn(1, 2, h * w, 8, dtype=torch.float64)

    def perturbed(patch: int) -> Tensor:
        out = levels.clone()
        out[:, 1, patch] += torch.randn(8, dtype=torch.float64)  # not a constant: LN_f would remove it
        return out

    with torch.no_grad():
        vce.sampling_offsets.bias.zero_()  # every sample on the query's own patch
    base = vce(anchor, levels, (h, w))
    far = vce(anchor, perturbed(15), (h, w))  # patch (3, 3)
    torch.testing.assert_close(far[0, 0], base[0, 0])  # query (0, 0) does not see it
    assert not torch.allclose(far[0, 15], base[0, 15])

    with torch.no_grad():
        vce.sampling_offsets.bias.copy_(torch.tensor([2.0, 1.0]).repeat(2 * 2))  # (x+2, y+1)
    base = vce(anchor, levels, (h, w))
    hit = vce(anchor, perturbed(1 * w + 2), (h, w))  # patch (1, 2): where query (0, 0) samples
    assert not torch.allclose(hit[0, 0], base[0, 0])
    miss = vce(anchor, perturbed(0), (h, w))  # its own patch is no longer read
    torch.testing.assert_close(miss[0, 0], base[0, 0])
