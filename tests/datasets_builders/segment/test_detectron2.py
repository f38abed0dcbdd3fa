"""detectron2's panoptic output -> our prediction, on outputs built here (no detectron2 needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datasets_builders.segment import detectron2 as d2
from datasets_builders.segment.coco_writer import encode
from datasets_builders.segment.prediction import CategoryTable, PredictedSegment, SetupError
from datasets_builders.segment.run import configure

COCO_THINGS = list(range(80))  # PanopticFPN: thing contiguous id c -> label c
COCO_STUFF = {c: 79 + c for c in range(1, 54)}  # PanopticFPN stuff 1..53 (0 is "a thing") -> labels 80..132


def panoptic_fpn_output():
    """Shaped as PanopticFPN's combine_semantic_and_instance_outputs returns it."""
    seg = torch.tensor([[1, 1, 2, 0],
                        [3, 3, 2, 4],
                        [3, 3, 2, -1]], dtype=torch.int32)
    info = [{"id": 1, "isthing": True, "score": 0.98, "category_id": 0, "instance_id": 0},
            {"id": 2, "isthing": True, "score": 0.61, "category_id": 79, "instance_id": 3},
            {"id": 3, "isthing": False, "category_id": 1, "area": 4}]
    return seg, info


def test_things_and_stuff_land_in_one_label_space_and_stuff_has_no_score():
    prediction = d2.from_detectron2(*panoptic_fpn_output(), thing_ids=COCO_THINGS, stuff_ids=COCO_STUFF)
    assert prediction.segments == (PredictedSegment(1, 0, 0.98), PredictedSegment(2, 79, 0.61),
                                   PredictedSegment(3, 80, None))
    # id 4 is not in segments_info and -1 is void: both become 0
    assert prediction.segmentation.dtype == np.int32
    assert prediction.segmentation.tolist() == [[1, 1, 2, 0], [3, 3, 2, 0], [3, 3, 2, 0]]
    assert [(s["category_id"], s["area"], s["score"]) for s in encode(prediction).segments] == \
        [(1, 2, 0.98), (80, 3, 0.61), (81, 4, None)]


def test_a_single_label_space_output_maps_through_the_same_tables():
    seg = np.array([[1, 2], [2, 2]])
    info = [{"id": 1, "isthing": True, "category_id": 5}, {"id": 2, "isthing": False, "category_id": 100}]
    prediction = d2.from_detectron2(seg, info, thing_ids=range(133), stuff_ids=range(133))
    assert prediction.segments == (PredictedSegment(1, 5, None), PredictedSegment(2, 100, None))


def test_a_category_without_a_label_and_the_label_divisor_form_are_refused():
    seg, info = panoptic_fpn_output()
    info[2]["category_id"] = 54
    with pytest.raises(ValueError, match="^segment 3: stuff category_id 54 has no label$"):
        d2.from_detectron2(seg, info, thing_ids=COCO_THINGS, stuff_ids=COCO_STUFF)
    with pytest.raises(ValueError, match="without segments_info"):
        d2.from_detectron2(seg, None, thing_ids=COCO_THINGS, stuff_ids=COCO_STUFF)


def test_label_maps_join_detectron2_metadata_and_our_categories_by_dataset_id():
    categories = CategoryTable.from_coco([{"id": 200, "name": "rug", "isthing": 0},
                                          {"id": 1, "name": "person", "isthing": 1},
                                          {"id": 92, "name": "banner", "isthing": 0},
                                          {"id": 90, "name": "brush", "isthing": 1}])
    metadata = SimpleNamespace(thing_dataset_id_to_contiguous_id={1: 0, 90: 1},
                               stuff_dataset_id_to_contiguous_id={92: 1, 200: 2})
    assert d2.label_maps(metadata, categories) == ({0: 0, 1: 1}, {1: 2, 2: 3})


def test_without_detectron2_the_backend_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(d2, "installed", lambda: False)
    with pytest.raises(SetupError) as e:
        configure("detectron2", checkpoint=None, preset=None, categories_file=None, threshold=0.5,
                  mask_threshold=0.95, batch_size=8)
    assert str(e.value) == d2.INSTALL_HINT
    assert "pip install 'git+https://github.com/facebookresearch/detectron2.git'" in d2.INSTALL_HINT
