"""The ideal tower: ground-truth patch features in place of a tower's, for the scenes it was built for."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from datasets_builders.sample_world.patches import FEATURES, feature_matrix, patch_truth
from datasets_builders.sample_world.scene import generate_scene
from datasets_builders.sample_world.world import JPEG_QUALITY
from models.build import build_model
from models.ideal_tower import IdealTower, use_ideal_tower
from models.inputs import InputSpec, pixels
from models.presets import tiny
from tests.models.batches import batch_for

SEED, SCENES = 11, (0, 1, 2)


def _pictures(model, indices, seed: int = SEED) -> torch.Tensor:
    """pixel_values as a collator makes them: the sample world's JPEG bytes, decoded, through InputSpec."""
    images = [Image.open(io.BytesIO(generate_scene(seed, i).jpeg(JPEG_QUALITY))) for i in indices]
    return InputSpec.of(model).pixels(images)


@pytest.fixture(scope="module")
def model():
    return use_ideal_tower(build_model(tiny()), IdealTower.for_world(SEED, SCENES))


def test_the_vlm_runs_on_the_ideal_tower_and_its_tokens_tell_scenes_apart(model):
    batch = batch_for(model)
    batch["pixel_values"] = _pictures(model, (0, 2))
    out = model(**batch)
    assert out.loss is not None and torch.isfinite(out.loss)
    with torch.no_grad():
        visual, _ = model.encode_images(batch["pixel_values"])
    assert visual.shape == (2, model.visual_tokens, 128)
    assert not torch.allclose(visual[0], visual[1], atol=1e-3)


def test_features_of_a_patch_are_its_truth_then_zeros(model):
    scene = generate_scene(SEED, 1)
    truth = torch.from_numpy(feature_matrix(patch_truth(scene, model.vision.grid)))
    picture = pixels([Image.open(io.BytesIO(scene.jpeg(JPEG_QUALITY)))], 112, model.vision.config.mean,
                     model.vision.config.std)
    (features,) = model.vision.features(picture, [-1])
    assert features.shape == (1, 64, 64)
    assert torch.equal(features[0, :, :len(FEATURES)], truth)
    assert torch.equal(features[0, 27, :len(FEATURES)], truth[27])  # patch (3, 3), raster order
    assert not features[0, :, len(FEATURES):].any()


def test_an_unknown_picture_is_refused_by_name(model):
    unknown = r"knows scenes 0\.\.2 of world seed 11; this picture \(image 1 of 2\) is none"
    with pytest.raises(ValueError, match=unknown):
        model.vision.features(_pictures(model, (0, 3)), [-1])
    with pytest.raises(ValueError, match="is none of them"):  # the same scene, not through the JPEG the world writes
        model.vision.features(model.vision.preprocess([generate_scene(SEED, 0).image]), [-1])


def test_nothing_in_it_trains(model):
    assert not list(model.vision.parameters())
    model.set_trainable(("vision", "connector"))
    assert not any(name.startswith("vision") for name, p in model.named_parameters() if p.requires_grad)
    assert any(p.requires_grad for p in model.connector.parameters())


def test_a_tower_of_another_grid_does_not_fit(model):
    with pytest.raises(ValueError, match="16x16 grid of width 64; the model's connector expects 8x8"):
        use_ideal_tower(model, IdealTower.for_world(SEED, (0,), image_size=224))
