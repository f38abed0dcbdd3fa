"""The backend-neutral prediction, the category table, and their COCO panoptic encoding."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from datasets_builders.formats.crayon import decode_ids
from datasets_builders.segment.coco_writer import MARKER, OutputLayout, encode
from datasets_builders.segment.prediction import CategoryTable, PanopticPrediction, PredictedSegment, SetupError

MAP = np.array([[0, 5, 5, 0],
                [70000, 5, 5, 0],
                [70000, 70000, 0, 0]], dtype=np.int32)


def test_encoding_measures_area_and_box_on_the_map_and_drops_segments_it_does_not_show():
    prediction = PanopticPrediction(MAP, (PredictedSegment(5, 2, 0.912345678), PredictedSegment(70000, 0, None),
                                          PredictedSegment(9, 1, 0.7)))
    encoded = encode(prediction)
    assert encoded.segments == [
        {"id": 5, "category_id": 3, "area": 4, "bbox": [1, 0, 2, 2], "iscrowd": 0, "score": 0.912346},
        {"id": 70000, "category_id": 1, "area": 3, "bbox": [0, 1, 2, 2], "iscrowd": 0, "score": None},
    ]
    pixels = np.asarray(Image.open(io.BytesIO(encoded.png)))
    assert pixels.shape == (3, 4, 3) and tuple(pixels[1, 0]) == (112, 17, 1)  # 70000 = 1*65536 + 17*256 + 112
    assert (decode_ids(pixels) == MAP).all()


def test_a_map_showing_an_unlisted_segment_id_is_refused():
    with pytest.raises(ValueError, match=r"segmentation has segment ids missing from its segments: \[5\]"):
        encode(PanopticPrediction(MAP, (PredictedSegment(70000, 0, 0.9),)))


@pytest.mark.parametrize("segmentation, segments, message", [
    (MAP.astype(np.int64), (), "2-D int32 map"),
    (MAP, (PredictedSegment(5, 0, 1.0), PredictedSegment(5, 1, 1.0)), "distinct"),
    (MAP, (PredictedSegment(0, 0, 1.0),), "distinct and in 1..16777215"),
])
def test_predictions_are_checked_when_made(segmentation, segments, message):
    with pytest.raises(ValueError, match=message):
        PanopticPrediction(segmentation, segments)


def test_coco_panoptic_id2label_makes_the_first_80_labels_things():
    names = {i: f"class{i}" for i in range(133)}
    coco = CategoryTable.from_id2label(names).coco()
    assert coco[0] == {"id": 1, "name": "class0", "isthing": 1}
    assert [c["isthing"] for c in coco[78:82]] == [1, 1, 0, 0] and coco[-1]["id"] == 133


def test_other_label_counts_need_a_categories_file():
    with pytest.raises(SetupError) as e:
        CategoryTable.from_id2label({i: str(i) for i in range(10)})
    assert str(e.value) == ("the model has 10 labels, not COCO panoptic's 133; pass --categories FILE "
                            "(a COCO panoptic categories JSON) to say which are things")


def test_a_categories_file_is_matched_to_labels_by_position_after_sorting_by_id(tmp_path):
    path = tmp_path / "categories.json"
    path.write_text(json.dumps([{"id": 92, "name": "banner", "isthing": 0},
                                {"id": 1, "name": "person", "isthing": 1, "supercategory": "person"}]))
    table = CategoryTable.from_file(path, 2)
    assert table.coco() == [{"id": 1, "name": "person", "supercategory": "person", "isthing": 1},
                            {"id": 2, "name": "banner", "isthing": 0}]
    assert [c.source_id for c in table.categories] == [1, 92]
    path.write_text(json.dumps({"categories": [{"id": 3, "name": "x", "isthing": 1}]}))  # a whole panoptic JSON
    assert CategoryTable.from_file(path, None).coco() == [{"id": 1, "name": "x", "isthing": 1}]
    with pytest.raises(SetupError, match=f"^{path}: lists 1 categories but the model has 3 labels$"):
        CategoryTable.from_file(path, 3)


def test_an_output_folder_is_new_empty_or_an_earlier_segment_run(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SetupError, match="is not empty and holds no earlier segment output"):
        OutputLayout(foreign).prepare()
    assert (foreign / "notes.txt").read_text() == "keep me"

    layout = OutputLayout(tmp_path / "out")
    layout.prepare()
    assert (layout.root / MARKER).is_file() and layout.png_dir.is_dir() and layout.images_dir.is_dir()
    (layout.png_dir / "old.jpg.png").write_bytes(b"x")
    layout.run_path.write_text("{}")
    layout.prepare()  # an earlier run is replaced, its files gone
    assert list(layout.png_dir.iterdir()) == [] and not layout.run_path.exists()
