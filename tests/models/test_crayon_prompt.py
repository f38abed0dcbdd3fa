"""CoLLaVO's Crayon Prompt: per-patch pooling, the embedding by hand, and the per-layer branch on the tiny model."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch.testing import assert_close

from models.build import build_model
from models.config import CrayonConfig
from models.crayon_prompt import CrayonLayers, CrayonPrompt, pool_crayon, zeros_with
from models.presets import tiny
from models.prompt import collate, encode_conversation

# ---- pool_crayon -----------------------------------------------------------------------------


def _quadrants() -> np.ndarray:
    """A 28 x 28 map, 2 x 2 patches of 14 px, each with a known (semantic, numbering) mode."""
    crayon = np.zeros((28, 28, 2), dtype=np.uint8)
    tl, tr, bl, br = crayon[:14, :14], crayon[:14, 14:], crayon[14:, :14], crayon[14:, 14:]
    tl[...] = (1, 1)
    tl[0, :5] = (5, 2)  # a few stray pixels of another instance
    tr[...] = (7, 3)
    tr[3:5, 2:9] = (0, 0)
    br_flat = np.zeros((196, 2), dtype=np.uint8)  # 100 x (9, 1), 60 x (2, 2), 36 x (12, 1): the mode is the middle pair
    br_flat[:100], br_flat[100:160], br_flat[160:] = (9, 1), (2, 2), (12, 1)
    br[...] = br_flat.reshape(14, 14, 2)
    bl[...] = (4, 2)  # 98 / 98 tie between (4, 2) and (2, 9): the smaller pair wins
    bl[7:] = (2, 9)
    return crayon


def test_each_patch_takes_the_most_frequent_semantic_and_numbering_pair_of_its_pixels():
    pooled = pool_crayon(_quadrants(), image_size=28, patch_size=14)
    assert pooled.shape == (2, 2, 2) and pooled.dtype == np.int64
    assert pooled.tolist() == [[[1, 1], [7, 3]], [[2, 9], [9, 1]]]


def test_a_tie_resolves_to_the_smaller_pair_semantic_first_then_numbering():
    crayon = np.zeros((28, 28, 2), dtype=np.uint8)
    crayon[:14, :14] = (3, 5)
    crayon[:14, :14][:, 7:] = (3, 4)  # same class, numbering 4 vs 5, 98 pixels each
    crayon[:14, 14:] = (6, 1)
    crayon[:14, 14:][7:] = (5, 20)  # (5, 20) < (6, 1): semantic decides before numbering
    crayon[14:, :] = (8, 8)
    crayon[14:, :][:, :7] = (0, 0)
    crayon[14:, :][:, 21:] = (0, 0)  # bottom-left: 98 x (0, 0) vs 98 x (8, 8); bottom-right likewise
    pooled = pool_crayon(crayon, 28, 14)
    assert pooled.tolist() == [[[3, 4], [5, 20]], [[0, 0], [0, 0]]]


def test_a_non_square_map_is_resized_plainly_to_the_square_input_like_the_image():
    wide = np.zeros((28, 56, 2), dtype=np.uint8)  # 56 wide, 28 high: the right half is class 3
    wide[:, 28:] = (3, 1)
    assert pool_crayon(wide, 28, 14).tolist() == [[[0, 0], [3, 1]], [[0, 0], [3, 1]]]
    tall = np.zeros((84, 28, 2), dtype=np.uint8)  # 28 wide, 84 high: the bottom two thirds are class 5
    tall[28:] = (5, 2)
    # squeezed to 28 x 28, the class-5 part starts at row 28 * 28 / 84 = 9.33: the top patches keep 0 (9 of 14 rows)
    assert pool_crayon(tall, 28, 14).tolist() == [[[0, 0], [0, 0]], [[5, 2], [5, 2]]]
    # no aspect-preserving crop or pad: a band at the far right still reaches the pooled map
    band = np.zeros((28, 112, 2), dtype=np.uint8)
    band[:, 70:] = (9, 9)  # 42 of 112 columns -> 10.5 of 28 columns, all in the right patches
    assert pool_crayon(band, 28, 14)[:, 1].tolist() == [[9, 9], [9, 9]]


def _reference_pool(crayon: np.ndarray, image_size: int, patch: int) -> list:
    """Per channel nearest resize (what PIL does to the image grid), then a Counter per patch."""
    channels = [np.asarray(PILImage.fromarray(crayon[..., c]).resize((image_size, image_size),
                                                                     PILImage.Resampling.NEAREST)) for c in (0, 1)]
    grid = image_size // patch
    out = []
    for r in range(grid):
        row = []
        for c in range(grid):
            window = (slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch))
            counts = Counter(zip(channels[0][window].ravel().tolist(), channels[1][window].ravel().tolist()))
            top = max(counts.values())
            row.append(list(min(pair for pair, n in counts.items() if n == top)))
        out.append(row)
    return out


@pytest.mark.parametrize("shape", [(112, 112), (90, 150), (300, 41)])
def test_pooling_matches_a_nearest_resize_and_counter_reference_on_random_maps(shape):
    rng = np.random.default_rng(sum(shape))
    crayon = rng.integers(0, 3, size=(*shape, 2)).astype(np.uint8)  # few values: many ties
    assert pool_crayon(crayon, 112, 14).tolist() == _reference_pool(crayon, 112, 14)


def test_numbering_above_max_instances_is_clamped_and_semantic_is_kept():
    crayon = np.zeros((28, 28, 2), dtype=np.uint8)
    crayon[:14] = (4, 25)
    crayon[14:] = (133, 7)
    assert pool_crayon(crayon, 28, 14).tolist() == [[[4, 20], [4, 20]], [[133, 7], [133, 7]]]
    assert pool_crayon(crayon, 28, 14, max_instances=5).tolist() == [[[4, 5], [4, 5]], [[133, 5], [133, 5]]]


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 1), (28, 28, 3), (2, 28, 28, 2)])
def test_a_map_that_is_not_height_width_two_is_a_value_error(shape):
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        pool_crayon(np.zeros(shape, dtype=np.uint8), 28, 14)


# ---- CrayonPrompt ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompt() -> CrayonPrompt:
    torch.manual_seed(0)
    return CrayonPrompt(CrayonConfig(enabled=True, num_classes=133, max_instances=20, dim=32), 32, 128, k=4).eval()


def _random_crayon(seed: int, batch: int = 2, grid: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, 134, (batch, grid, grid), generator=g),
                        torch.randint(0, 21, (batch, grid, grid), generator=g)], -1)


def test_the_crayon_prompt_is_the_mlp_of_four_summed_embeddings_in_a_raster_strip_by_hand(prompt):
    crayon = _random_crayon(1)
    e_sem, e_num = prompt.semantic.weight.detach(), prompt.numbering.weight.detach()
    fc1, fc2 = prompt.mlp.fc1, prompt.mlp.fc2
    expected = torch.empty(2, 16, 128)
    for b in range(2):
        for t in range(16):  # token t = patches 4t .. 4t+3 = row t // 2, columns 4 (t % 2) .. 4 (t % 2) + 3
            row, col = divmod(4 * t, 8)
            z = [e_sem[crayon[b, row, col + j, 0]] + e_num[crayon[b, row, col + j, 1]] for j in range(4)]
            hidden = F.gelu(fc1.weight.detach() @ torch.cat(z) + fc1.bias.detach())
            expected[b, t] = fc2.weight.detach() @ hidden + fc2.bias.detach()
    with torch.no_grad():
        out = prompt(crayon)
    assert out.shape == (2, 16, 128)
    assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_changing_one_patch_changes_only_the_visual_token_of_its_one_by_four_strip(prompt):
    crayon = _random_crayon(2, batch=1)
    changed = crayon.clone()
    changed[0, 3, 5] = torch.tensor([(int(crayon[0, 3, 5, 0]) + 1) % 134, (int(crayon[0, 3, 5, 1]) + 1) % 21])
    with torch.no_grad():
        differs = (prompt(crayon) - prompt(changed)).abs().amax(-1)[0] > 0
    # patch (3, 5) is raster patch 29, token 29 // 4 = 7 (row 3, right strip); a 2 x 2 block would be token 6
    assert differs.nonzero().flatten().tolist() == [7]


def test_numbering_beyond_max_instances_embeds_as_max_instances(prompt):
    crayon = _random_crayon(3, batch=1)
    over, at_max = crayon.clone(), crayon.clone()
    over[0, 0, 0, 1], at_max[0, 0, 0, 1] = 57, 20
    with torch.no_grad():
        assert_close(prompt(over), prompt(at_max), rtol=0, atol=0)


@pytest.mark.parametrize("semantic", [134, 200, -1])
def test_a_semantic_index_outside_zero_to_num_classes_is_a_value_error(prompt, semantic):
    crayon = _random_crayon(4, batch=1)
    crayon[0, 2, 2, 0] = semantic
    with pytest.raises(ValueError, match=r"outside 0\.\.133"):
        prompt(crayon)
    crayon[0, 2, 2, 0] = 133  # the last class is in range (133 classes + unknown = 134 rows)
    prompt(crayon)


def test_the_parameter_count_is_embeddings_plus_mlp_as_the_formula_says():
    C, I, d, D, k = 133, 20, 32, 128, 4
    prompt = CrayonPrompt(CrayonConfig(enabled=True, num_classes=C, max_instances=I, dim=d), d, D, k)
    formula = (C + 1 + I + 1) * d + (k * d * D + D) + (D * D + D)
    assert sum(p.numel() for p in prompt.parameters()) == formula == 37_984
    with torch.device("meta"):  # the paper's sizes (model-spec.md 1.4): d = 1024, D = 4096, no merge
        paper = CrayonPrompt(CrayonConfig(enabled=True), 1024, 4096, 1)
    assert sum(p.numel() for p in paper.semantic.parameters()) + paper.numbering.weight.numel() == 158_720
    assert sum(p.numel() for p in paper.mlp.parameters()) == 20_979_712


# ---- CrayonLayers on the tiny model -----------------------------------------------------------

ALPHA = 16.0  #: rank 8 -> scale 2, so a missing scale would show


@pytest.fixture(scope="module")
def layered():
    model = build_model(tiny(crayon_layers=True).replace(crayon={"layer_alpha": ALPHA}))
    return model.eval()


def _image_batch(model, seed: int = 0) -> dict:
    """Row 0 with an image, row 1 text-only."""
    tok = model.tokenizer
    rows = [encode_conversation(tok, [("user", "[refer] where is the red circle"), ("assistant", "{<1><2><30><40>}")],
                                visual_tokens=model.visual_tokens),
            encode_conversation(tok, [("user", "Say hello."), ("assistant", "hello there")], visual_tokens=None)]
    batch = collate(rows, tok.pad_token_id)
    g = torch.Generator().manual_seed(seed)
    batch["pixel_values"] = torch.randn(1, 3, 112, 112, generator=g)
    batch["crayon"] = torch.stack([torch.randint(0, 134, (1, 8, 8), generator=g),
                                   torch.randint(0, 21, (1, 8, 8), generator=g)], -1)
    return batch


def _randomise_branches(layers: CrayonLayers, seed: int) -> dict:
    """Known random A_seg and B_seg for every branch; returns the original weights to restore."""
    saved = {k: v.detach().clone() for k, v in layers.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layers.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return saved


def _logits_without_branch(model, batch) -> torch.Tensor:
    embeds = model.embed(batch["input_ids"], batch["image_mask"], batch["pixel_values"], batch["crayon"])
    model.crayon_layers.attach(None)
    return model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], use_cache=False).logits


def test_the_branch_scale_is_alpha_over_rank_and_it_hooks_every_target_linear_of_every_layer(layered):
    layers = layered.crayon_layers
    assert layers.scale == ALPHA / 8 == 2.0
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj")
    assert sorted(layers.branches) == sorted(f"model__layers__{i}__{'self_attn' if t[0] in 'qkvo' else 'mlp'}__{t}"
                                             for i in range(4) for t in targets)
    # per target linear r (D_llm + D_out): q 128, k 64, v 64, o 128, gate 256, up 256 outputs
    per_layer = 8 * sum(128 + out for out in (128, 64, 64, 128, 256, 256))
    assert sum(p.numel() for p in layers.parameters()) == 4 * per_layer == 53_248


def test_at_init_b_seg_is_zero_so_the_logits_equal_those_with_the_features_detached(layered):
    assert all(float(branch[1].weight.detach().abs().max()) == 0.0
               for branch in layered.crayon_layers.branches.values())
    batch = _image_batch(layered)
    with torch.no_grad():
        hooked = layered(**batch).logits
        detached = _logits_without_branch(layered, batch)
        assert_close(hooked, detached, rtol=0, atol=0)
        saved = _randomise_branches(layered.crayon_layers, seed=5)
        try:  # and the comparison is not vacuous: with B_seg != 0 the image row changes, the text row does not
            changed = layered(**batch).logits
        finally:
            layered.crayon_layers.load_state_dict(saved)
    assert (changed[0] - detached[0]).abs().max() > 1e-3
    assert_close(changed[1], detached[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ["model__layers__0__self_attn__q_proj", "model__layers__2__mlp__up_proj"])
def test_a_hooked_linear_adds_scale_times_b_of_a_of_c_at_image_positions_and_nothing_at_text_positions(layered, key):
    layers = layered.crayon_layers
    module = layered.llm.get_submodule("base_model.model." + key.replace("__", "."))  # q_proj: a peft LoRA linear
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 10, 128, generator=g)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 2:6], mask[1, 5:9] = True, True
    tokens = torch.randn(2, 4, 128, generator=g)
    features = zeros_with(tokens, mask, torch.Size((2, 10, 128)))
    saved = _randomise_branches(layers, seed=7)
    try:
        with torch.no_grad():
            layers.attach(None)
            base = module(x)
            layers.attach(features)
            out = module(x)
            layers.attach(None)
            down, up = layers.branches[key][0].weight, layers.branches[key][1].weight
            added = 2.0 * (tokens @ down.T @ up.T)  # (2, 4, D_out) by hand
    finally:
        layers.attach(None)
        layers.load_state_dict(saved)
    assert_close(out[mask], (base[mask].reshape(2, 4, -1) + added).reshape(8, -1), rtol=1e-5, atol=1e-5)
    assert_close(out[~mask], base[~mask], rtol=0, atol=0)
    assert (out[mask] - base[mask]).abs().min() > 0  # every image position really moved


def test_inside_a_full_forward_each_hooked_linear_adds_the_branch_at_the_image_rows_positions_only(layered):
    """Capture one linear's input and output during model.forward and recompute it with and without the branch."""
    layers = layered.crayon_layers
    key = "model__layers__1__self_attn__v_proj"
    module = layered.llm.get_submodule("base_model.model." + key.replace("__", "."))
    seen = {}
    handle = module.register_forward_hook(lambda m, args, output: seen.update(x=args[0], y=output))  # runs after
    batch = _image_batch(layered, seed=3)
    saved = _randomise_branches(layers, seed=9)
    try:
        with torch.no_grad():
            layered(**batch)
            handle.remove()  # before recomputing, or the capture would be overwritten
            _, prompt_tokens = layered.encode_images(batch["pixel_values"], batch["crayon"])
            layers.attach(None)
            base = module(seen["x"])
            added = layers.scale * layers.branches[key](prompt_tokens)  # (1, 16, 64)
    finally:
        handle.remove()
        layers.load_state_dict(saved)
    mask = batch["image_mask"]
    assert mask[0].sum() == 16 and not mask[1].any()
    assert_close(seen["y"][mask], base[mask] + added[0], rtol=1e-5, atol=1e-5)
    assert_close(seen["y"][~mask], base[~mask], rtol=0, atol=0)


def test_on_a_cached_generation_step_of_one_token_the_branch_is_not_applied(layered):
    layers = layered.crayon_layers
    key = "model__layers__3__mlp__gate_proj"
    module = layered.llm.get_submodule("base_model.model." + key.replace("__", "."))
    g = torch.Generator().manual_seed(13)
    features = torch.randn(1, 12, 128, generator=g)  # the prompt's features stay attached during generation
    step = torch.randn(1, 1, 128, generator=g)
    saved = _randomise_branches(layers, seed=1)
    try:
        with torch.no_grad():
            layers.attach(None)
            base = module(step)
            layers.attach(features)
            cached = module(step)
            full = module(torch.randn(1, 12, 128, generator=g))  # the prefill itself does get the branch
            layers.attach(None)
    finally:
        layers.attach(None)
        layers.load_state_dict(saved)
    assert_close(cached, base, rtol=0, atol=0)
    assert full.shape == (1, 12, 256)


def test_generation_applies_the_branch_at_the_prefill_so_the_first_token_follows_the_hooked_logits(layered):
    from models.prompt import encode_prompt

    tok = layered.tokenizer
    prompt = collate([encode_prompt(tok, "[caption] describe", visual_tokens=16)], tok.pad_token_id)
    batch = _image_batch(layered, seed=4)
    saved = _randomise_branches(layered.crayon_layers, seed=2)
    try:
        with torch.no_grad():
            args = (prompt["input_ids"], prompt["attention_mask"], prompt["image_mask"])
            hooked = layered(*args, pixel_values=batch["pixel_values"], crayon=batch["crayon"]).logits[0, -1]
            plain = _logits_without_branch(layered, {**prompt, "pixel_values": batch["pixel_values"],
                                                     "crayon": batch["crayon"]})[0, -1]
            first = layered.generate(*args, batch["pixel_values"], batch["crayon"], max_new_tokens=3)[0]
    finally:
        layered.crayon_layers.load_state_dict(saved)
    assert hooked.argmax() != plain.argmax()  # the branch decides the first token here
    assert first[0] == int(hooked.argmax())
    assert layered.crayon_layers._features is None  # detached again after generate


def test_the_branch_keys_are_the_same_with_and_without_peft_wrapping_the_llm(layered):
    bare = build_model(tiny(crayon_layers=True).replace(adapter={"kind": "none"}))
    assert type(bare.llm).__name__ == "LlamaForCausalLM" and type(layered.llm).__name__.startswith("Peft")
    assert list(bare.crayon_layers.branches) == list(layered.crayon_layers.branches)
    assert not any(k.startswith("base_model") for k in bare.crayon_layers.branches)
    # so a crayon branch trained under LoRA loads into an LLM exported without it
    bare.crayon_layers.load_state_dict(layered.crayon_layers.state_dict())


def test_a_forward_and_backward_reaches_the_crayon_tables_mlp_and_branch_and_a_seg_after_one_step():
    model = build_model(tiny(crayon_layers=True))
    model.train()
    batch = _image_batch(model, seed=6)
    used_semantic = set(batch["crayon"][..., 0].flatten().tolist())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    layers = model.crayon_layers

    out = model(**batch)
    out.loss.backward()
    semantic_grad = model.crayon.semantic.weight.grad
    assert semantic_grad is not None and model.crayon.numbering.weight.grad.abs().sum() > 0
    rows_with_grad = set(semantic_grad.abs().sum(1).nonzero().flatten().tolist())
    assert rows_with_grad == used_semantic  # only the classes of the image's patches; the text row adds none
    for linear in (model.crayon.mlp.fc1, model.crayon.mlp.fc2):
        assert linear.weight.grad.abs().sum() > 0 and linear.bias.grad.abs().sum() > 0
    # In the last layer only k_proj and v_proj reach a supervised token: q, o, gate and up at an image position
    # feed only that position's own logits, which no label supervises (causal attention), so their gradient is 0.
    dead = {f"model__layers__3__{name}" for name in ("self_attn__q_proj", "self_attn__o_proj", "mlp__gate_proj",
                                                     "mlp__up_proj")}
    for key, branch in layers.branches.items():
        if key in dead:
            assert float(branch[1].weight.grad.abs().max()) == 0.0, key
        else:
            assert branch[1].weight.grad.abs().sum() > 0, key  # B_seg learns from the first step
        assert float(branch[0].weight.grad.abs().max()) == 0.0, key  # A_seg's gradient goes through B_seg = 0

    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    assert all(float(branch[1].weight.detach().abs().max()) > 0 for key, branch in layers.branches.items()
               if key not in dead)
    model(**batch).loss.backward()
    for key, branch in layers.branches.items():
        if key not in dead:
            assert branch[0].weight.grad.abs().sum() > 0, key
            assert branch[1].weight.grad.abs().sum() > 0, key
    assert all(p.grad is None for p in model.vision.parameters())
