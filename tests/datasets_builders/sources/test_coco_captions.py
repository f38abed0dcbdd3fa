"""COCO Captions (cocodataset.org layout) -> caption samples: exact turns, rejects, splits, years."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.store import ShardDataset, verify_dataset
from datasets_builders.templates.render import choose, pools


def captions_file(root: Path, subtype: str, images: list[tuple], captions: list) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"info": {}, "licenses": [],
           "images": [{"id": i, "file_name": name, "width": w, "height": h} for i, name, w, h in images],
           "annotations": [{"image_id": i, "id": a, "caption": c} for a, i, c in captions]}
    (root / "annotations" / f"captions_{subtype}.json").write_text(json.dumps(doc))


def photo(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, "green").save(path, "JPEG")


def coco14(image_id: int, subtype: str = "train2014") -> str:
    return f"COCO_{subtype}_{image_id:012d}.jpg"


def write_captions(root: Path) -> Path:
    photo(root / "train2014" / coco14(1), (32, 24))
    photo(root / "train2014" / coco14(2), (16, 16))  # the JSON says 32x24
    photo(root / "val2014" / coco14(9, "val2014"), (20, 10))
    captions_file(root, "train2014",
                  [(1, coco14(1), 32, 24), (2, coco14(2), 32, 24), (3, coco14(3), 32, 24), (4, coco14(4), "x", 24)],
                  [(101, 1, "A Dog; running!"), (100, 1, "Two (2) cats."), (102, 1, "..."), (200, 2, "a thing"),
                   (300, 3, "no photo"), (400, 4, "bad size"), (500, 5, "unknown image")])
    doc = json.loads((root / "annotations" / "captions_train2014.json").read_text())
    doc["annotations"].append({"image_id": 1, "caption": "no id"})
    (root / "annotations" / "captions_train2014.json").write_text(json.dumps(doc))
    captions_file(root, "val2014", [(9, coco14(9, "val2014"), 20, 10)], [(900, 9, "A val photo.")])
    return root


def rejects(root: Path) -> list[tuple[str, str, str]]:
    return [(r["source_id"], r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()]


def samples(root: Path) -> dict:
    return {s.key: s for s in ShardDataset(root).samples()}


def test_captions_become_caption_samples_with_exact_turns(tmp_path):
    raw = write_captions(tmp_path / "raw")
    build_dataset("coco-captions", raw, tmp_path / "captions")
    out = samples(tmp_path / "captions")
    assert list(out) == ["c100", "c101", "c900"]  # train before val; by image, then annotation id
    dog = out["c101"]
    assert [(t.role, t.content) for t in dog.turns] == [
        ("user", pools()["caption"][choose("caption", "c101")]), ("assistant", "a dog running")]
    assert out["c100"].turns[1].content == "two 2 cats"
    assert (dog.task, dog.split, dict(dog.meta)) == (
        "caption", "train", {"fields": {"caption": "a dog running"}, "image_id": 1, "file_name": coco14(1)})
    assert dog.image.data == (raw / "train2014" / coco14(1)).read_bytes()
    assert (out["c900"].split, out["c900"].turns[1].content) == ("val", "a val photo")


def test_each_bad_caption_is_rejected_with_a_reason_and_counts_reconcile(tmp_path):
    raw = write_captions(tmp_path / "raw")
    manifest = build_dataset("coco-captions", raw, tmp_path / "captions").manifest
    assert rejects(tmp_path / "captions") == [
        ("captions_train2014.json#7", "read", "captions_train2014.json entry 7: has no id"),
        ("102", "convert", "caption 102 is empty after normalisation (raw '...')"),
        ("200", "image", f"image {raw / 'train2014' / coco14(2)} is 16x16 but the annotation says 32x24; "
                         "its boxes would be wrong"),
        ("300", "image", f"image file {raw / 'train2014' / coco14(3)} is missing"),
        ("400", "convert", "image 4 in captions_train2014.json is unusable: width 'x' is not an integer"),
        ("500", "convert", "image 5 is not in captions_train2014.json"),
    ]
    c = manifest.counts
    assert (c.read, c.records_written, c.records_rejected, c.written, c.rejected) == (9, 3, 6, 3, 6)
    assert verify_dataset(tmp_path / "captions").ok


def test_split_reads_only_its_file_and_limit_caps_the_records_read(tmp_path):
    raw = write_captions(tmp_path / "raw")
    val = build_dataset("coco-captions", raw, tmp_path / "val", split="val").manifest
    assert (val.counts.read, val.by_split) == (1, {"val": 1})
    limited = build_dataset("coco-captions", raw, tmp_path / "two", limit=2).manifest
    assert (limited.counts.read, limited.counts.written, limited.counts.rejected) == (2, 1, 1)


def test_when_both_years_of_a_split_are_present_only_the_newer_is_read(tmp_path):
    raw = write_captions(tmp_path / "raw")
    photo(raw / "val2017" / "000000000009.jpg", (20, 10))
    captions_file(raw, "val2017", [(9, "000000000009.jpg", 20, 10)], [(900, 9, "The same photo, 2017.")])
    build_dataset("coco-captions", raw, tmp_path / "captions", split="val")
    out = samples(tmp_path / "captions")
    assert list(out) == ["c900"]
    assert (out["c900"].turns[1].content, out["c900"].meta["file_name"]) == ("the same photo, 2017", "000000000009.jpg")


def test_a_folder_without_caption_files_or_with_broken_json_is_an_input_error(tmp_path):
    (tmp_path / "raw" / "annotations").mkdir(parents=True)
    (tmp_path / "raw" / "annotations" / "instances_train2014.json").write_text("{}")
    with pytest.raises(InputFormatError) as e:
        build_dataset("coco-captions", tmp_path / "raw", tmp_path / "captions")
    assert str(e.value) == (f"{tmp_path / 'raw'}: expected COCO captions annotations/captions_<split><year>.json "
                            "(e.g. captions_train2014.json) with the images in <split><year>/")
    (tmp_path / "raw" / "annotations" / "captions_val2017.json").write_text("not json")
    with pytest.raises(InputFormatError, match=r"captions_val2017\.json: not valid JSON \(line 1, column 1"):
        build_dataset("coco-captions", tmp_path / "raw", tmp_path / "captions")
