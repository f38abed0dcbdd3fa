"""The vision tower: features by layer against the raw transformers model, freezing, preprocessing, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    Blip2VisionConfig,
    Blip2VisionModel,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    SiglipVisionModel,
    ViTConfig,
)

from models.config import CLIP_MEAN, CLIP_STD, ConfigError, VisionConfig
from models.presets import TINY_VISION
from models.vision_tower import TOWERS, VisionTower, build_vision_tower

GRID = TINY_VISION["image_size"] // TINY_VISION["patch_size"]  # 112 / 14 = 8
WIDTH = TINY_VISION["hidden_size"]
LAYERS = TINY_VISION["num_hidden_layers"]
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}


def _pixels(batch: int = 2, side: int = 112, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _tower(model_type: str = "clip_vision_model", seed: int = 0, **fields: object) -> VisionTower:
    torch.manual_seed(seed)
    return build_vision_tower(VisionConfig(model_type=model_type, init=TINY_VISION, **fields))


def _raw(tower: VisionTower, pixels: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = tower.model(pixel_values=pixels, output_hidden_states=True, **kwargs)
    return out.hidden_states


@pytest.fixture(scope="module")
def clip() -> VisionTower:
    return _tower()


@pytest.fixture(scope="module")
def saved_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[CLIPVisionModel, Path]:
    torch.manual_seed(1)
    model = CLIPVisionModel(CLIPVisionConfig(**TINY_VISION)).eval()
    folder = tmp_path_factory.mktemp("clip_vision")
    model.save_pretrained(folder)
    return model, folder


# ---------------------------------------------------------------------------------------------- features


def test_the_tower_knows_its_grid_width_and_depth(clip: VisionTower) -> None:
    assert (clip.image_size, clip.patch_size, clip.grid, clip.width, clip.layers) == (112, 14, 8, 64, 4)
    assert clip.has_cls and not clip.interpolate
    assert isinstance(clip.model, CLIPVisionModel)


@pytest.mark.parametrize("index", [-1, -2])
def test_clip_features_are_the_hidden_state_with_cls_dropped(clip: VisionTower, index: int) -> None:
    pixels = _pixels()
    (tokens,) = clip.features(pixels, [index])
    assert tokens.shape == (2, GRID * GRID, WIDTH)
    reference = _raw(clip, pixels)[index]
    assert reference.shape == (2, GRID * GRID + 1, WIDTH)
    torch.testing.assert_close(tokens, reference[:, 1:], rtol=0, atol=0)


def test_several_layers_come_back_in_the_order_asked(clip: VisionTower) -> None:
    pixels = _pixels()
    maps = clip.features(pixels, [-2, -1, 0, LAYERS, -(LAYERS + 1)])
    hidden = _raw(clip, pixels)
    for tokens, index in zip(maps, [-2, -1, 0, LAYERS, -(LAYERS + 1)], strict=True):
        torch.testing.assert_close(tokens, hidden[index][:, 1:], rtol=0, atol=0)
    assert not torch.equal(maps[0], maps[1])


def test_each_image_of_a_batch_is_encoded_on_its_own(clip: VisionTower) -> None:
    pixels = _pixels(batch=3)
    (batch,) = clip.features(pixels, [-1])
    (single,) = clip.features(pixels[1:2], [-1])
    torch.testing.assert_close(batch[1:2], single, rtol=1e-5, atol=1e-5)


def test_siglip_has_no_cls_and_keeps_every_token() -> None:
    tower = _tower("siglip_vision_model")
    assert isinstance(tower.model, SiglipVisionModel) and not tower.has_cls
    pixels = _pixels()
    maps = tower.features(pixels, [-1, -2])
    hidden = _raw(tower, pixels)
    for tokens, index in zip(maps, [-1, -2], strict=True):
        assert tokens.shape == (2, GRID * GRID, WIDTH)
        torch.testing.assert_close(tokens, hidden[index], rtol=0, atol=0)


def test_post_layernorm_applies_the_towers_final_norm_to_every_patch_token() -> None:
    tower = _tower(post_layernorm=True)
    norm = tower.model.post_layernorm
    with torch.no_grad():  # make the norm's affine part visible
        norm.weight.copy_(torch.linspace(0.5, 2.0, WIDTH))
        norm.bias.copy_(torch.linspace(-1.0, 1.0, WIDTH))
    pixels = _pixels()
    hidden = _raw(tower, pixels)
    for index in (-1, -2):
        (tokens,) = tower.features(pixels, [index])
        expected = F.layer_norm(hidden[index], (WIDTH,), norm.weight, norm.bias, norm.eps)[:, 1:]
        torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(tokens, hidden[index][:, 1:], atol=1e-2)


def test_blip2_with_post_layernorm_gives_its_last_hidden_state_like_minigptv2s_ln_vision() -> None:
    tower = _tower("blip_2_vision_model", post_layernorm=True)
    assert isinstance(tower.model, Blip2VisionModel) and tower.has_cls
    pixels = _pixels()
    (tokens,) = tower.features(pixels, [-1])
    with torch.no_grad():
        out = tower.model(pixel_values=pixels)
    assert tokens.shape == (2, GRID * GRID, WIDTH)
    torch.testing.assert_close(tokens, out.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)


def test_blip2_without_post_layernorm_gives_the_raw_hidden_states() -> None:
    tower = _tower("blip_2_vision_model")
    pixels = _pixels()
    maps = tower.features(pixels, [-1, -2])
    hidden = _raw(tower, pixels)
    for tokens, index in zip(maps, [-1, -2], strict=True):
        torch.testing.assert_close(tokens, hidden[index][:, 1:], rtol=0, atol=0)


@pytest.mark.parametrize("index", [LAYERS + 1, -(LAYERS + 2), 100])
def test_a_layer_outside_the_hidden_states_is_a_config_error(clip: VisionTower, index: int) -> None:
    with pytest.raises(ConfigError, match=rf"vision layer {index} does not exist: the tower has 4 layers "
                                          r"\(5 hidden states\)"):
        clip.features(_pixels(batch=1), [-1, index])


# ---------------------------------------------------------------------------------------------- freezing


def test_a_frozen_tower_has_no_trainable_parameters_and_stays_in_eval_mode() -> None:
    tower = _tower()
    assert tower.config.frozen
    assert not any(p.requires_grad for p in tower.parameters())
    assert not tower.training and not any(m.training for m in tower.modules())  # as built
    tower.train()
    assert not tower.training and not any(m.training for m in tower.modules())
    (tokens,) = tower.features(_pixels(batch=1), [-1])
    assert not tokens.requires_grad


def test_a_frozen_tower_built_with_dropout_is_deterministic_without_calling_eval() -> None:
    torch.manual_seed(0)
    tower = build_vision_tower(VisionConfig(init={**TINY_VISION, "attention_dropout": 0.5}))
    pixels = _pixels(batch=1)
    first, second = tower.features(pixels, [-1])[0], tower.features(pixels, [-1])[0]
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_an_unfrozen_tower_trains_and_carries_gradients() -> None:
    tower = _tower(frozen=False)
    assert all(p.requires_grad for p in tower.parameters())
    tower.train()
    assert tower.training and tower.model.training
    (tokens,) = tower.features(_pixels(batch=1), [-1])
    tokens.sum().backward()
    assert tower.model.embeddings.patch_embedding.weight.grad is not None
    tower.eval()
    assert not tower.model.training


# ---------------------------------------------------------------------------------------------- preprocessing


def _three_bands(width: int = 90, height: int = 30) -> Image.Image:
    """Red left third, green middle third, blue right third: a centre crop would keep only green."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 3] = (255, 0, 0)
    array[:, width // 3 : 2 * width // 3] = (0, 255, 0)
    array[:, 2 * width // 3 :] = (0, 0, 255)
    return Image.fromarray(array)


def _normalised(rgb: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor([(c / 255.0 - m) / s for c, m, s in zip(rgb, mean, std, strict=True)])


def test_preprocess_resizes_a_wide_image_to_a_square_without_cropping(clip: VisionTower) -> None:
    pixels = clip.preprocess([_three_bands()])
    assert pixels.shape == (1, 3, 112, 112) and pixels.dtype == torch.float32
    red, green, blue = (_normalised(c, CLIP_MEAN, CLIP_STD) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255)))
    for y in (0, 111):  # all four corners survive: the left ones red, the right ones blue
        torch.testing.assert_close(pixels[0, :, y, 0], red, rtol=0, atol=1e-5)
        torch.testing.assert_close(pixels[0, :, y, 111], blue, rtol=0, atol=1e-5)
    torch.testing.assert_close(pixels[0, :, 56, 56], green, rtol=0, atol=1e-5)
    # the bands are stretched, not shifted: each third of the output columns is its band's colour
    torch.testing.assert_close(pixels[0, :, 30, 30], red, rtol=0, atol=1e-5)
    torch.testing.assert_close(pixels[0, :, 30, 81], blue, rtol=0, atol=1e-5)


def test_preprocess_resizes_a_tall_image_too(clip: VisionTower) -> None:
    tall = _three_bands().transpose(Image.Transpose.ROTATE_90)  # 30 wide, 90 high: blue top, red bottom
    pixels = clip.preprocess([tall])
    assert pixels.shape == (1, 3, 112, 112)
    blue, red = _normalised((0, 0, 255), CLIP_MEAN, CLIP_STD), _normalised((255, 0, 0), CLIP_MEAN, CLIP_STD)
    for x in (0, 111):
        torch.testing.assert_close(pixels[0, :, 0, x], blue, rtol=0, atol=1e-5)
        torch.testing.assert_close(pixels[0, :, 111, x], red, rtol=0, atol=1e-5)


def test_preprocess_normalises_one_pixel_as_computed_by_hand(clip: VisionTower) -> None:
    image = Image.new("RGB", (40, 20), (200, 100, 50))
    pixels = clip.preprocess([image])
    # (200/255 - 0.48145466) / 0.26862954 = 1.12741..., (100/255 - 0.4578275) / 0.26130258 = -0.25134...,
    # (50/255 - 0.40821073) / 0.27577711 = -0.76923...
    expected = torch.tensor([1.1274, -0.2513, -0.7692])
    torch.testing.assert_close(pixels[0, :, 7, 93], expected, rtol=0, atol=1e-4)


def test_preprocess_uses_the_configured_mean_and_std() -> None:
    tower = _tower(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    pixels = tower.preprocess([Image.new("RGB", (16, 48), (255, 0, 51))])
    # (1 - 0.5) / 0.5 = 1, (0 - 0.25) / 0.25 = -1, (0.2 - 0) / 2 = 0.1
    torch.testing.assert_close(pixels[0, :, 0, 0], torch.tensor([1.0, -1.0, 0.1]), rtol=0, atol=1e-6)
    torch.testing.assert_close(pixels[0, :, 111, 111], torch.tensor([1.0, -1.0, 0.1]), rtol=0, atol=1e-6)


def test_preprocess_stacks_a_batch_and_converts_grey_and_rgba_to_rgb(clip: VisionTower) -> None:
    grey = Image.new("L", (10, 30), 128)
    rgba = Image.new("RGBA", (30, 10), (255, 0, 0, 7))
    pixels = clip.preprocess([grey, rgba])
    assert pixels.shape == (2, 3, 112, 112) and pixels.is_contiguous()
    torch.testing.assert_close(pixels[0, :, 5, 5], _normalised((128, 128, 128), CLIP_MEAN, CLIP_STD), rtol=0,
                               atol=1e-5)
    torch.testing.assert_close(pixels[1, :, 5, 5], _normalised((255, 0, 0), CLIP_MEAN, CLIP_STD), rtol=0,
                               atol=1e-5)


def test_preprocess_uses_the_configured_image_size() -> None:
    tower = _tower(image_size=224)
    assert tower.preprocess([_three_bands()]).shape == (1, 3, 224, 224)


# ---------------------------------------------------------------------------------------------- loading


def test_a_saved_clip_vision_model_loads_with_identical_features(saved_clip: tuple[CLIPVisionModel, Path]) -> None:
    model, folder = saved_clip
    tower = build_vision_tower(VisionConfig(checkpoint=str(folder), feature_layer=-2))
    assert isinstance(tower.model, CLIPVisionModel) and tower.has_cls
    pixels = _pixels()
    with torch.no_grad():
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    for tokens, index in zip(tower.features(pixels, [-1, -2]), [-1, -2], strict=True):
        torch.testing.assert_close(tokens, hidden[index][:, 1:], rtol=0, atol=0)


def test_a_full_clip_checkpoint_loads_only_its_vision_part(tmp_path: Path) -> None:
    torch.manual_seed(2)
    full = CLIPModel(CLIPConfig(vision_config=TINY_VISION, text_config=TINY_TEXT, projection_dim=16)).eval()
    full.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "clip"
    tower = build_vision_tower(VisionConfig(checkpoint=str(tmp_path)))
    assert isinstance(tower.model, CLIPVisionModel) and (tower.grid, tower.width) == (GRID, WIDTH)
    pixels = _pixels()
    with torch.no_grad():
        hidden = full.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
    for tokens, index in zip(tower.features(pixels, [-1, -2]), [-1, -2], strict=True):
        torch.testing.assert_close(tokens, hidden[index][:, 1:], rtol=0, atol=0)


def test_a_saved_blip2_vision_model_loads_with_identical_features(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = Blip2VisionModel(Blip2VisionConfig(**TINY_VISION)).eval()
    model.save_pretrained(tmp_path)
    tower = build_vision_tower(VisionConfig(checkpoint=str(tmp_path), post_layernorm=True))
    assert isinstance(tower.model, Blip2VisionModel)
    pixels = _pixels()
    with torch.no_grad():
        out = model(pixel_values=pixels)
    torch.testing.assert_close(tower.features(pixels, [-1])[0], out.last_hidden_state[:, 1:], rtol=1e-6, atol=1e-6)


def test_a_relative_checkpoint_resolves_against_base_dir(saved_clip: tuple[CLIPVisionModel, Path],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model, folder = saved_clip
    monkeypatch.chdir(tmp_path)  # a relative path must not be read against the working directory
    tower = build_vision_tower(VisionConfig(checkpoint=folder.name), base_dir=folder.parent)
    pixels = _pixels(batch=1)
    with torch.no_grad():
        expected = model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1][:, 1:]
    torch.testing.assert_close(tower.features(pixels, [-1])[0], expected, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="no config.json"):
        build_vision_tower(VisionConfig(checkpoint=folder.name))  # without base_dir: the cwd, which lacks it


def test_a_folder_without_config_json_is_a_config_error_naming_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "not_a_checkpoint"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        build_vision_tower(VisionConfig(checkpoint=str(folder)))
    message = str(info.value)
    assert message.startswith("model.vision.checkpoint: ") and str(folder) in message
    assert "no config.json" in message and "never downloaded" in message


def test_a_missing_folder_is_a_config_error_and_nothing_is_downloaded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model\.vision\.checkpoint: .*openai/clip-vit-base-patch32"):
        build_vision_tower(VisionConfig(checkpoint="openai/clip-vit-base-patch32"), base_dir=tmp_path)


def test_an_image_size_twice_the_checkpoints_interpolates_the_position_embeddings(
        saved_clip: tuple[CLIPVisionModel, Path]) -> None:
    model, folder = saved_clip
    tower = build_vision_tower(VisionConfig(checkpoint=str(folder), image_size=224))
    assert tower.interpolate and (tower.image_size, tower.grid) == (224, 2 * GRID)
    pixels = _pixels(batch=1, side=224)
    (tokens,) = tower.features(pixels, [-1])
    assert tokens.shape == (1, (2 * GRID) ** 2, WIDTH)
    with torch.no_grad():
        hidden = model(pixel_values=pixels, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states
    torch.testing.assert_close(tokens, hidden[-1][:, 1:], rtol=0, atol=0)
    with pytest.raises(ValueError):  # the raw model refuses 224 px without interpolation
        model(pixel_values=pixels)


@pytest.mark.parametrize("model_type", ["siglip_vision_model", "blip_2_vision_model"])
def test_interpolation_works_for_siglip_and_blip2_too(model_type: str) -> None:
    tower = _tower(model_type, image_size=224)
    assert tower.grid == 2 * GRID
    assert tower.features(_pixels(batch=1, side=224), [-1])[0].shape == (1, (2 * GRID) ** 2, WIDTH)


def test_an_image_size_not_a_multiple_of_the_patch_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^model\.vision\.image_size: 120 is not a multiple of the patch size 14"):
        _tower(image_size=120)


def test_an_unsupported_model_type_is_a_config_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        build_vision_tower(VisionConfig(model_type="vit", init=TINY_VISION))
    message = str(info.value)
    assert message.startswith("model.vision.model_type: 'vit' is not a supported vision tower; choose one of ")
    assert message.endswith(", ".join(sorted(TOWERS)))
    for choice in ("clip", "clip_vision_model", "siglip", "siglip_vision_model", "blip-2", "blip_2_vision_model"):
        assert choice in message


def test_a_checkpoint_of_an_unsupported_type_is_a_config_error(tmp_path: Path) -> None:
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"^model\.vision\.checkpoint: 'vit' is not a supported vision tower"):
        build_vision_tower(VisionConfig(checkpoint=str(tmp_path)))


@pytest.mark.parametrize(("model_type", "model_class"), [
    ("clip", CLIPVisionModel), ("siglip", SiglipVisionModel), ("blip-2", Blip2VisionModel),
])
def test_the_short_model_type_names_build_the_same_towers(model_type: str, model_class: type) -> None:
    assert isinstance(_tower(model_type).model, model_class)


def test_the_same_seed_builds_the_same_random_tower() -> None:
    pixels = _pixels(batch=1)
    a, b, c = _tower(seed=5), _tower(seed=5), _tower(seed=6)
    torch.testing.assert_close(a.features(pixels, [-1])[0], b.features(pixels, [-1])[0], rtol=0, atol=0)
    assert not torch.allclose(a.features(pixels, [-1])[0], c.features(pixels, [-1])[0])
