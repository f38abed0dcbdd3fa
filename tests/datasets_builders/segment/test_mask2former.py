"""Mask2Former through transformers: the tiny random model and local checkpoint folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from datasets_builders.segment import mask2former
from datasets_builders.segment.mask2former import Mask2FormerSegmenter, ModelSpec
from datasets_builders.segment.prediction import SetupError
from datasets_builders.segment.run import configure

TINY = ModelSpec(preset="tiny")


@pytest.fixture(scope="module")
def pictures(world_images):
    return [Image.open(p).convert("RGB") for p in sorted(world_images.glob("*.jpg"))]


@pytest.fixture(scope="module")
def tiny(pictures):
    return Mask2FormerSegmenter(TINY, threshold=0.5, mask_threshold=0.95, threads=1)


def test_the_tiny_model_finds_segments_at_collavos_own_thresholds(tiny, pictures):
    predictions = tiny.predict(pictures)
    for picture, prediction in zip(pictures, predictions):
        assert prediction.segmentation.shape == (picture.height, picture.width)  # the original size
        assert prediction.segments, "every sample-world picture gets at least one segment"
        assert [s.id for s in prediction.segments] == list(range(1, len(prediction.segments) + 1))
        assert all(0 <= s.label < 10 and 0.5 < s.score <= 1.0 for s in prediction.segments)
        assert set(np.unique(prediction.segmentation)) - {0} == {s.id for s in prediction.segments}


def test_predictions_do_not_depend_on_the_batch_or_the_model_instance(tiny, pictures):
    together = tiny.predict(pictures)
    other = Mask2FormerSegmenter(TINY, threshold=0.5, mask_threshold=0.95, threads=1)
    alone = [other.predict([p])[0] for p in pictures]
    for a, b in zip(together, alone):
        assert a.segments == b.segments and (a.segmentation == b.segmentation).all()


def test_a_saved_checkpoint_folder_loads_locally_and_predicts_the_same(tiny, pictures, tmp_path):
    model, processor = mask2former.load(TINY)
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    loaded = Mask2FormerSegmenter(ModelSpec(checkpoint=tmp_path / "ckpt"), threshold=0.5, mask_threshold=0.95,
                                  threads=1)
    for a, b in zip(tiny.predict(pictures[:2]), loaded.predict(pictures[:2])):
        assert a.segments == b.segments and (a.segmentation == b.segmentation).all()
    # its 10 labels are not COCO's 133, so the names need a categories file
    with pytest.raises(SetupError, match="the model has 10 labels"):
        mask2former.categories(ModelSpec(checkpoint=tmp_path / "ckpt"))


def test_the_tiny_model_speaks_the_sample_worlds_categories():
    coco = mask2former.categories(TINY).coco()
    assert len(coco) == 10
    assert coco[0] == {"id": 1, "name": "circle", "supercategory": "shape", "isthing": 1}
    assert coco[4] == {"id": 5, "name": "sky-other-merged", "supercategory": "sky", "isthing": 0}


def test_checkpoint_folders_that_cannot_serve_are_named_in_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SetupError) as e:
        mask2former.check_checkpoint(missing)
    assert str(e.value) == (f"checkpoint folder {missing} does not exist "
                            "(models are loaded locally only, never downloaded)")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetupError, match="has no config.json or preprocessor_config.json; expected a Mask2Former"):
        mask2former.check_checkpoint(tmp_path / "empty")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (other / "preprocessor_config.json").write_text("{}")
    with pytest.raises(SetupError, match=f"^checkpoint folder {other} holds a 'bert' model, not mask2former$"):
        mask2former.check_checkpoint(other)
    with pytest.raises(SetupError, match="needs --checkpoint DIR"):
        configure("mask2former", checkpoint=None, preset=None, categories_file=None, threshold=0.5,
                  mask_threshold=0.95, batch_size=8)


def test_mask_logits_are_cropped_to_the_unpadded_part_of_the_batch_input():
    import torch

    pixel_mask = torch.zeros(8, 8, dtype=torch.int64)
    pixel_mask[:6, :4] = 1  # the image covers 6 of 8 rows and 4 of 8 columns
    masks = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(3, 4, 4)  # logits at half the input size
    assert mask2former._unpadded(masks, pixel_mask).shape == (3, 3, 2)
    assert mask2former._unpadded(masks, torch.ones(8, 8)).shape == (3, 4, 4)  # no padding: unchanged
