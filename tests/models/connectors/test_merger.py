"""MiniGPT-v2's merger (1x4 raster strips, not 2x2 blocks), the MLP connector, and the Connector per kind."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from models.config import ConnectorConfig
from models.connectors.connector import Connector
from models.connectors.merger import Merger, merge_tokens
from models.connectors.mlp import MLPConnector
from models.connectors.vce import VCE
from models.presets import tiny


def _grid_tokens(rows: int, cols: int, batch: int = 1) -> Tensor:
    """(B, rows*cols, 2) patch tokens in raster order whose features are their own (row, col)."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    coords = torch.stack([r.flatten(), c.flatten()], dim=-1).float()
    return coords.expand(batch, -1, -1).clone()


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


# ---------------------------------------------------------------------------------------------- merge_tokens


def test_merge_tokens_concatenates_four_consecutive_tokens() -> None:
    tokens = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0],
                            [8.0, 9.0], [10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]])  # (1, 8, 2)
    merged = merge_tokens(tokens, 4)
    expected = torch.tensor([[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],           # tokens 0, 1, 2, 3
                              [8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]])  # tokens 4, 5, 6, 7
    assert merged.shape == (1, 2, 8)
    torch.testing.assert_close(merged, expected, rtol=0, atol=0)


def test_merge_tokens_in_pairs_and_k_one_is_the_identity() -> None:
    tokens = torch.arange(16.0).view(1, 8, 2)
    torch.testing.assert_close(merge_tokens(tokens, 2), torch.arange(16.0).view(1, 4, 4), rtol=0, atol=0)
    torch.testing.assert_close(merge_tokens(tokens, 1), tokens, rtol=0, atol=0)


def test_on_a_4x4_grid_each_merged_token_is_one_row_of_four_patches_not_a_2x2_block() -> None:
    merged = merge_tokens(_grid_tokens(4, 4), 4)  # (1, 4, 8): four (row, col) pairs per token
    assert merged.shape == (1, 4, 8)
    for t in range(4):
        patches = merged[0, t].view(4, 2).tolist()
        assert patches == [[t, 0], [t, 1], [t, 2], [t, 3]]  # row t, columns 0..3 left to right
    # a 2x2 block would have been patches (0,0) (0,1) (1,0) (1,1)
    assert merged[0, 0].view(4, 2).tolist() != [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_on_the_tiny_8x8_grid_each_row_splits_into_two_1x4_strips() -> None:
    merged = merge_tokens(_grid_tokens(8, 8), 4)  # (1, 16, 8)
    for t in range(16):
        patches = merged[0, t].view(4, 2).tolist()
        row, first = t // 2, 4 * (t % 2)
        assert patches == [[row, first + j] for j in range(4)]


def test_on_minigptv2s_32x32_grid_1024_tokens_become_256_strips_eight_per_row() -> None:
    merged = merge_tokens(_grid_tokens(32, 32), 4)
    assert merged.shape == (1, 256, 8)
    patches = merged[0].view(256, 4, 2)
    rows, cols = patches[..., 0], patches[..., 1]
    t = torch.arange(256)
    assert torch.equal(rows, (t // 8).float()[:, None].expand(256, 4))  # one row per strip
    assert torch.equal(cols, (4 * (t % 8)[:, None] + torch.arange(4)).float())  # four adjacent columns


def test_merge_tokens_keeps_the_images_of_a_batch_apart() -> None:
    tokens = torch.randn(3, 12, 5)
    merged = merge_tokens(tokens, 4)
    assert merged.shape == (3, 3, 20)
    for b in range(3):
        torch.testing.assert_close(merged[b], merge_tokens(tokens[b : b + 1], 4)[0], rtol=0, atol=0)
        torch.testing.assert_close(merged[b, 2], torch.cat([tokens[b, 8], tokens[b, 9], tokens[b, 10], tokens[b, 11]]),
                                   rtol=0, atol=0)


@pytest.mark.parametrize(("n", "k"), [(10, 4), (7, 2), (3, 4)])
def test_a_token_count_not_divisible_by_k_is_a_value_error(n: int, k: int) -> None:
    with pytest.raises(ValueError, match=rf"cannot merge {n} patch tokens in groups of {k}: {n} is not a multiple "
                                         rf"of {k}"):
        merge_tokens(torch.zeros(1, n, 2), k)


# ---------------------------------------------------------------------------------------------- Merger


def test_the_merger_is_a_linear_over_the_concatenation_computed_by_hand() -> None:
    dv, dllm, k = 3, 5, 4
    merger = Merger(dv, dllm, k)
    with torch.no_grad():
        merger.proj.weight.copy_(torch.arange(dllm * k * dv, dtype=torch.float32).view(dllm, k * dv) / 100 - 0.3)
        merger.proj.bias.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0, 2.0]))
    tokens = torch.randn(2, 8, dv, generator=torch.Generator().manual_seed(0))
    out = merger(tokens)
    assert out.shape == (2, 2, dllm)
    w, bias = merger.proj.weight, merger.proj.bias
    for b in range(2):
        for t in range(2):
            concat = torch.cat([tokens[b, 4 * t + j] for j in range(4)])  # (k * dv,)
            expected = torch.stack([(w[o] * concat).sum() + bias[o] for o in range(dllm)])
            torch.testing.assert_close(out[b, t], expected, rtol=1e-5, atol=1e-5)


def test_the_mergers_parameter_count_is_k_dv_dllm_plus_dllm() -> None:
    merger = Merger(64, 128, 4)
    assert merger.k == 4 and merger.proj.in_features == 256 and merger.proj.out_features == 128
    assert _count(merger) == 4 * 64 * 128 + 128 == 32_896


def test_at_minigptv2s_sizes_the_merger_has_23_072_768_parameters() -> None:
    with torch.device("meta"):  # shapes only: no 92 MB allocation
        merger = Merger(1408, 4096, 4)
    assert (merger.proj.in_features, merger.proj.out_features) == (5632, 4096)
    assert _count(merger) == 4 * 1408 * 4096 + 4096 == 23_072_768


def test_the_merger_rejects_a_token_count_not_divisible_by_k() -> None:
    with pytest.raises(ValueError, match="not a multiple of 4"):
        Merger(3, 5, 4)(torch.zeros(1, 6, 3))


# ---------------------------------------------------------------------------------------------- MLPConnector


def test_the_mlp_connector_is_fc2_of_gelu_of_fc1_by_hand() -> None:
    torch.manual_seed(0)
    mlp = MLPConnector(4, 6)
    tokens = torch.randn(2, 5, 4)
    hidden = tokens @ mlp.fc1.weight.T + mlp.fc1.bias
    expected = _gelu(hidden) @ mlp.fc2.weight.T + mlp.fc2.bias
    out = mlp(tokens)
    assert out.shape == (2, 5, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out, torch.relu(hidden) @ mlp.fc2.weight.T + mlp.fc2.bias, atol=1e-3)  # exact GELU


def test_the_mlp_connector_with_k_merges_consecutive_tokens_first() -> None:
    torch.manual_seed(1)
    mlp = MLPConnector(3, 5, k=4)
    tokens = torch.randn(1, 8, 3)
    out = mlp(tokens)
    assert out.shape == (1, 2, 5)
    for t in range(2):
        concat = torch.cat([tokens[0, 4 * t + j] for j in range(4)])
        expected = _gelu(concat @ mlp.fc1.weight.T + mlp.fc1.bias) @ mlp.fc2.weight.T + mlp.fc2.bias
        torch.testing.assert_close(out[0, t], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("d_in", "d_out", "k"), [(64, 128, 1), (64, 128, 4), (1024, 4096, 1)])
def test_the_mlp_connectors_parameter_count_follows_its_formula(d_in: int, d_out: int, k: int) -> None:
    with torch.device("meta"):
        mlp = MLPConnector(d_in, d_out, k)
    assert _count(mlp) == (k * d_in * d_out + d_out) + (d_out * d_out + d_out)


def test_llavas_mlp2x_gelu_at_clip_l_to_7b_sizes_has_about_21_m_parameters() -> None:
    with torch.device("meta"):
        mlp = MLPConnector(1024, 4096)
    assert _count(mlp) == 1024 * 4096 + 4096 + 4096 * 4096 + 4096 == 20_979_712


# ---------------------------------------------------------------------------------------------- Connector


DV, DLLM, GRID = 64, 128, 8  # the tiny preset: CLIP width 64, Llama width 128, 8 x 8 patches


def _connector(kind: str, feature_layer: int = -1, merge: int = 4, seed: int = 0) -> Connector:
    torch.manual_seed(seed)
    config = tiny(connector=kind).connector
    if merge != config.merge:
        config = ConnectorConfig(kind=config.kind, merge=merge, vce_layers=config.vce_layers,
                                 vce_heads=config.vce_heads, vce_points=config.vce_points)
    return Connector(config, feature_layer, DV, DLLM, GRID)


def _maps(count: int, batch: int = 2) -> list[Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randn(batch, GRID * GRID, DV, generator=g) for _ in range(count)]


@pytest.mark.parametrize("feature_layer", [-1, -2])
def test_a_merger_connector_reads_the_feature_layer_and_projects_its_strips(feature_layer: int) -> None:
    connector = _connector("merger", feature_layer)
    assert connector.kind == "merger" and connector.layers == (feature_layer,) and connector.vce is None
    assert isinstance(connector.project, Merger) and connector.project.k == 4
    maps = _maps(1)
    out = connector(maps)
    assert out.shape == (2, GRID * GRID // 4, DLLM)
    proj = connector.project.proj
    concat = torch.cat([maps[0][:, 4 * 3 + j] for j in range(4)], dim=-1)  # visual token 3
    torch.testing.assert_close(out[:, 3], concat @ proj.weight.T + proj.bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("feature_layer", [-1, -3])
def test_an_mlp_connector_reads_the_feature_layer_and_runs_the_mlp(feature_layer: int) -> None:
    connector = _connector("mlp", feature_layer)
    assert connector.kind == "mlp" and connector.layers == (feature_layer,) and connector.vce is None
    assert isinstance(connector.project, MLPConnector) and connector.project.k == 4
    maps = _maps(1)
    out = connector(maps)
    assert out.shape == (2, GRID * GRID // 4, DLLM)
    mlp = connector.project
    concat = torch.cat([maps[0][:, 4 * 5 + j] for j in range(4)], dim=-1)  # visual token 5
    expected = _gelu(concat @ mlp.fc1.weight.T + mlp.fc1.bias) @ mlp.fc2.weight.T + mlp.fc2.bias
    torch.testing.assert_close(out[:, 5], expected, rtol=1e-5, atol=1e-5)


def test_a_vce_connector_reads_the_vce_layers_anchor_first_and_projects_the_enhanced_anchor() -> None:
    connector = _connector("vce", feature_layer=-1)
    assert connector.kind == "vce" and connector.layers == (-2, -3, -4, -5)  # not the feature layer
    assert isinstance(connector.vce, VCE)
    assert (connector.vce.dim, connector.vce.levels, connector.vce.heads, connector.vce.points) == (DV, 4, 4, 2)
    assert isinstance(connector.project, MLPConnector) and connector.project.k == 4
    with torch.no_grad():  # leave VCE's zero offset/attention init, so every level matters
        for p in (connector.vce.sampling_offsets.weight, connector.vce.attention_weights.weight):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.1)
    maps = _maps(4)
    out = connector(maps)
    assert out.shape == (2, GRID * GRID // 4, DLLM)
    expected = connector.project(connector.vce(maps[0], maps, (GRID, GRID)))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert not torch.allclose(out, connector.project(maps[0]), atol=1e-3)  # VCE changed the anchor
    swapped = connector([maps[0], maps[2], maps[1], maps[3]])
    assert not torch.allclose(out, swapped, atol=1e-6)  # the levels are used, in order


def test_a_connector_ignores_extra_maps_beyond_the_ones_it_reads() -> None:
    connector = _connector("merger")
    maps = _maps(3)
    torch.testing.assert_close(connector(maps), connector(maps[:1]), rtol=0, atol=0)


def test_a_connector_with_merge_one_keeps_every_token() -> None:
    for kind in ("merger", "mlp", "vce"):
        connector = _connector(kind, merge=1)
        out = connector(_maps(len(connector.layers), batch=1))
        assert out.shape == (1, GRID * GRID, DLLM)


def test_each_connector_kind_has_exactly_the_parameters_of_its_parts() -> None:
    assert _count(_connector("merger")) == 4 * DV * DLLM + DLLM
    assert _count(_connector("mlp")) == (4 * DV * DLLM + DLLM) + (DLLM * DLLM + DLLM)
    vce = _connector("vce")
    assert _count(vce) == _count(vce.vce) + (4 * DV * DLLM + DLLM) + (DLLM * DLLM + DLLM)
