"""coco-panoptic: the panopticapi example converts exactly, hand-made sets pin maps, clamping and rejects."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datasets_builders.build import build_dataset
from datasets_builders.formats.crayon import read_crayon
from datasets_builders.sources.contract import InputFormatError, Options
from datasets_builders.store import ShardDataset, verify_dataset
from tests.fixtures import FIXTURES, real_fixture

PANOPTIC = FIXTURES / "coco_panoptic"
CATEGORIES = [{"id": 1, "name": "person", "isthing": 1}, {"id": 3, "name": "car", "isthing": 1},
              {"id": 184, "name": "tree-merged", "isthing": 0}]
# person -> semantic 1, car -> 2, tree -> 3 (position among the sorted ids, plus one)
HAND_IDS = np.array([[0, 0, 300, 300, 7, 7],
                     [5, 5, 300, 300, 7, 7],
                     [5, 5, 9, 9, 7, 7],
                     [9, 9, 9, 9, 7, 7]], np.uint32)
HAND_INFO = [{"id": 300, "category_id": 1, "area": 4, "bbox": [2, 0, 2, 2], "iscrowd": 0},
             {"id": 9, "category_id": 3, "area": 6, "bbox": [0, 2, 4, 2], "iscrowd": 0},
             {"id": 5, "category_id": 1, "area": 4, "bbox": [0, 1, 2, 2], "iscrowd": 0},
             {"id": 7, "category_id": 184, "area": 8, "bbox": [4, 0, 2, 4], "iscrowd": 0}]


def fixture(path: Path) -> Path:
    return real_fixture(str(path.relative_to(FIXTURES)))


def png_ids(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def write_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path, "PNG")


def write_set(root: Path, entries: list[dict], split: str = "val") -> Path:
    """A COCO-layout panoptic set: ``annotations/panoptic_<split>2017{.json,/}`` and ``<split>2017/``.
    Each entry: image_id, ids (array) and info; optional no_image, no_png, no_images_entry, truncate."""
    images, annotations = [], []
    for e in entries:
        stem, (h, w) = f"{e['image_id']:012d}", e["ids"].shape
        if not e.get("no_images_entry"):
            images.append({"id": e["image_id"], "file_name": f"{stem}.jpg", "width": w, "height": h})
        annotations.append({"image_id": e["image_id"], "file_name": f"{stem}.png", "segments_info": e["info"]})
        if not e.get("no_png"):
            write_png(root / "annotations" / f"panoptic_{split}2017" / f"{stem}.png", e["ids"])
        if not e.get("no_image"):
            out = io.BytesIO()
            Image.new("RGB", (w, h), (200, 30, 30)).save(out, "JPEG")
            data = out.getvalue()
            (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
            (root / f"{split}2017" / f"{stem}.jpg").write_bytes(data[: len(data) // 2] if e.get("truncate") else data)
    (root / "annotations" / f"panoptic_{split}2017").mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(doc))
    return root


def samples_by_key(root: Path) -> dict:
    return {s.key: s for s in ShardDataset(root).samples()}


def rejects(root: Path) -> dict[str, tuple[str, str]]:
    return {r["source_id"]: (r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()}


def test_the_panopticapi_example_converts_with_maps_that_reproduce_every_json_area_and_bbox(tmp_path):
    src = fixture(PANOPTIC)
    result = build_dataset("coco-panoptic", src, tmp_path / "pan")
    counts = result.manifest.counts
    assert (counts.read, counts.records_written, counts.records_rejected) == (2, 2, 0)
    assert verify_dataset(result.root).ok
    doc = json.loads((src / "panoptic_examples.json").read_text())
    sorted_ids = sorted(c["id"] for c in doc["categories"])
    assert sorted_ids.index(1) + 1 == 1  # person
    samples = samples_by_key(result.root)
    assert sorted(samples) == ["142238", "439180"]
    for ann in doc["annotations"]:
        sample = samples[str(ann["image_id"])]
        assert sample.task == "crayon" and sample.split == "train"
        assert sample.image.data == (src / "input_images" / ann["file_name"].replace(".png", ".jpg")).read_bytes()
        semantic, numbering = read_crayon(sample.extras["crayon.png"])
        ids = png_ids(src / "panoptic_examples" / ann["file_name"])
        assert not semantic[ids == 0].any() and not numbering[ids == 0].any()
        per_class: dict[int, int] = {}
        for seg in sorted(ann["segments_info"], key=lambda s: s["id"]):
            mask = ids == seg["id"]
            ys, xs = np.nonzero(mask)
            assert mask.sum() == seg["area"]
            assert [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == seg["bbox"]
            per_class[seg["category_id"]] = per_class.get(seg["category_id"], 0) + 1
            assert set(semantic[mask].tolist()) == {sorted_ids.index(seg["category_id"]) + 1}
            assert set(numbering[mask].tolist()) == {per_class[seg["category_id"]]}
            assert np.count_nonzero(mask & (semantic > 0)) == seg["area"]


def test_the_first_example_image_gets_its_object_list_in_segment_id_order(tmp_path):
    result = build_dataset("coco-panoptic", fixture(PANOPTIC), tmp_path / "pan")
    sample = samples_by_key(result.root)["142238"]
    persons = ", ".join(f"#{k} person" for k in range(3, 15))
    assert sample.turns[1].content == f"#1 person, #2 person, #1 tree, {persons}, #1 grass, #1 sky, #1 sports ball"
    assert sample.turns[3].content.startswith("Sure, it is (#1 person) [0.42, 0.28, 0.51, 0.61], (#2 person) ")
    assert sample.meta["fields"]["select_class"] == "tree"  # 640x427, tree bbox [0, 0, 640, 263]
    assert sample.turns[4].content == "Provide multiple bounding box coordinates for tree in the image."
    assert sample.turns[5].content == "Sure, it is (#1 tree) [0.00, 0.00, 1.00, 0.62]."
    assert sample.meta["image_id"] == 142238 and sample.meta["file_name"] == "000000142238.jpg"
    assert len(sample.meta["segments"]) == 18 and sample.meta["max_instances"] == 20


def test_a_hand_made_image_gets_exact_maps_numbering_in_segment_id_order_and_exact_text(tmp_path):
    src = write_set(tmp_path / "in", [{"image_id": 10, "ids": HAND_IDS, "info": HAND_INFO}])
    result = build_dataset("coco-panoptic", src, tmp_path / "out")
    sample = samples_by_key(result.root)["10"]
    semantic, numbering = read_crayon(sample.extras["crayon.png"])
    assert semantic.tolist() == [[0, 0, 1, 1, 3, 3], [1, 1, 1, 1, 3, 3], [1, 1, 2, 2, 3, 3], [2, 2, 2, 2, 3, 3]]
    assert numbering.tolist() == [[0, 0, 2, 2, 1, 1], [1, 1, 2, 2, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert sample.split == "val"
    assert [t.content for t in sample.turns[:4]] == [
        "Provide multiple object names with their numbering index in the image.",
        "#1 person, #1 tree, #1 car, #2 person",
        "Provide multiple object names with their numbering index and the objects' bounding box coordinates"
        " in this image.",
        "Sure, it is (#1 person) [0.00, 0.25, 0.33, 0.75], (#1 tree) [0.67, 0.00, 1.00, 1.00], "
        "(#1 car) [0.00, 0.50, 0.67, 1.00], (#2 person) [0.33, 0.00, 0.67, 0.50].",
    ]
    chosen = sample.meta["fields"]["select_class"]
    assert chosen in ("car", "person", "tree")
    expected_class = {"car": "(#1 car) [0.00, 0.50, 0.67, 1.00]", "tree": "(#1 tree) [0.67, 0.00, 1.00, 1.00]",
                      "person": "(#1 person) [0.00, 0.25, 0.33, 0.75], (#2 person) [0.33, 0.00, 0.67, 0.50]"}
    assert sample.turns[5].content == f"Sure, it is {expected_class[chosen]}."
    assert sample.meta["fields"]["segments"][0] == {
        "id": 5, "category_id": 1, "class": "person", "semantic": 1, "number": 1, "box": [0, 1, 2, 3],
        "area": 4, "iscrowd": False, "isthing": True}


def test_instances_past_max_instances_stay_in_the_map_but_leave_the_text_and_count_as_repairs(tmp_path):
    ids = np.array([[1, 2, 3, 0], [1, 2, 3, 4]], np.uint32)
    info = [{"id": i, "category_id": 1} for i in (1, 2, 3)] + [{"id": 4, "category_id": 3}]
    src = write_set(tmp_path / "in", [{"image_id": 11, "ids": ids, "info": info}])
    result = build_dataset("coco-panoptic", src, tmp_path / "out", options=Options(max_instances=2))
    assert result.manifest.repairs == {"numbering clamped to 2": 1}
    sample = samples_by_key(result.root)["11"]
    semantic, numbering = read_crayon(sample.extras["crayon.png"])
    assert numbering.tolist() == [[1, 2, 2, 0], [1, 2, 2, 1]]
    assert semantic.tolist() == [[1, 1, 1, 0], [1, 1, 1, 2]]
    assert sample.turns[1].content == "#1 person, #2 person, #1 car"
    assert [s["id"] for s in sample.meta["fields"]["segments"]] == [1, 2, 4]
    assert [(s["id"], s["number"]) for s in sample.meta["segments"]] == [(1, 1), (2, 2), (3, 2), (4, 1)]
    assert sample.meta["max_instances"] == 2


def test_each_broken_image_is_rejected_with_its_problem_named_and_the_others_are_written(tmp_path):
    def entry(image_id: int, **kw) -> dict:
        return {"image_id": image_id, "ids": HAND_IDS, "info": [dict(s) for s in HAND_INFO], **kw}

    missing_id = entry(20)
    missing_id["info"] = [s for s in missing_id["info"] if s["id"] != 9]
    wrong_area = entry(21)
    wrong_area["info"][0]["area"] = 5
    unknown_category = entry(22)
    unknown_category["info"][1]["category_id"] = 99
    src = write_set(tmp_path / "in", [
        entry(10), missing_id, wrong_area, unknown_category, entry(23, no_image=True), entry(24, no_png=True),
        entry(25, truncate=True), entry(26, no_images_entry=True), entry(27)])
    result = build_dataset("coco-panoptic", src, tmp_path / "out")
    counts = result.manifest.counts
    assert (counts.read, counts.records_written, counts.records_rejected) == (9, 2, 7)
    assert counts.read == counts.records_written + counts.records_rejected
    assert sorted(samples_by_key(result.root)) == ["10", "27"]
    got = rejects(result.root)
    assert got["20"] == ("convert", "000000000020.png: the PNG has segment ids missing from segments_info: 9")
    assert got["21"] == ("convert", "000000000021.png: segment 300: area 5 in the JSON but 4 pixels in the PNG")
    assert got["22"] == ("convert", "000000000022.png: category id 99 is not among the dataset's categories")
    assert got["23"] == ("image", f"image file {src / 'val2017' / '000000000023.jpg'} is missing")
    png_24 = src / "annotations" / "panoptic_val2017" / "000000000024.png"
    assert got["24"] == ("image", f"panoptic PNG {png_24} is missing")
    assert got["25"][0] == "image"
    assert got["25"][1].startswith(f"image {src / 'val2017' / '000000000025.jpg'} cannot be decoded")
    assert got["26"] == ("convert", "panoptic_val2017.json: image_id 26 has no entry in 'images'")


def test_a_png_whose_size_differs_from_the_image_entry_is_rejected(tmp_path):
    src = write_set(tmp_path / "in", [{"image_id": 10, "ids": HAND_IDS, "info": HAND_INFO},
                                      {"image_id": 12, "ids": HAND_IDS, "info": HAND_INFO}])
    write_png(src / "annotations" / "panoptic_val2017" / "000000000012.png", np.zeros((4, 5), np.uint32))
    result = build_dataset("coco-panoptic", src, tmp_path / "out")
    stage, reason = rejects(result.root)["12"]
    assert stage == "image" and reason.endswith("000000000012.png is 5x4 but the image is 6x4")


def test_split_follows_the_json_stem_and_other_splits_are_not_read(tmp_path):
    src = write_set(tmp_path / "in", [{"image_id": 10, "ids": HAND_IDS, "info": HAND_INFO}], split="val")
    write_set(src, [{"image_id": 30, "ids": HAND_IDS, "info": HAND_INFO}], split="train")
    result = build_dataset("coco-panoptic", src, tmp_path / "out", split="train")
    assert result.manifest.counts.read == 1
    assert [(s.key, s.split) for s in ShardDataset(result.root).samples()] == [("30", "train")]


def test_a_folder_that_is_not_coco_panoptic_fails_fast_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError) as e:
        build_dataset("coco-panoptic", tmp_path / "empty", tmp_path / "out")
    assert "expected a COCO panoptic JSON" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputFormatError, match="expected a COCO panoptic JSON"):
        build_dataset("coco-panoptic", fixture(FIXTURES / "flickr30k_entities"), tmp_path / "out2")


def test_a_panoptic_json_without_its_png_folder_fails_fast(tmp_path):
    src = write_set(tmp_path / "in", [{"image_id": 10, "ids": HAND_IDS, "info": HAND_INFO}])
    for png in (src / "annotations" / "panoptic_val2017").iterdir():
        png.unlink()
    (src / "annotations" / "panoptic_val2017").rmdir()
    with pytest.raises(InputFormatError) as e:
        build_dataset("coco-panoptic", src, tmp_path / "out")
    assert str(e.value) == (f"{src / 'annotations' / 'panoptic_val2017.json'}: expected its panoptic PNG folder "
                            "panoptic_val2017/ next to it")


def test_a_json_that_is_not_panoptic_is_ignored_and_a_broken_panoptic_json_is_an_input_error(tmp_path):
    src = write_set(tmp_path / "in", [{"image_id": 10, "ids": HAND_IDS, "info": HAND_INFO}])
    (src / "annotations" / "instances_val2017.json").write_text(json.dumps({"annotations": [{"bbox": [0, 0, 1, 1]}],
                                                                            "categories": []}))
    assert build_dataset("coco-panoptic", src, tmp_path / "out").manifest.counts.records_written == 1
    (src / "annotations" / "panoptic_val2017.json").write_text('{"annotations": [{"segments_info": []}')
    with pytest.raises(InputFormatError, match="panoptic_val2017.json: not valid JSON"):
        build_dataset("coco-panoptic", src, tmp_path / "out2")


def test_records_come_in_the_files_order_and_a_file_with_the_categories_first_reads_the_same(tmp_path):
    entries = [{"image_id": i, "ids": HAND_IDS, "info": HAND_INFO} for i in (30, 10, 20)]
    src = write_set(tmp_path / "in", entries)
    first = build_dataset("coco-panoptic", src, tmp_path / "out")
    assert [s.key for s in ShardDataset(first.root).samples()] == ["30", "10", "20"]
    path = src / "annotations" / "panoptic_val2017.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({"categories": doc["categories"], "annotations": doc["annotations"],
                                "images": doc["images"]}))
    again = build_dataset("coco-panoptic", src, tmp_path / "again")
    assert [s.key for s in ShardDataset(again.root).samples()] == ["30", "10", "20"]
    assert again.manifest.counts == first.manifest.counts
