"""`crayonflow segment` end to end: images -> COCO panoptic files -> crayon shards; scale-out on Ray."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from datasets_builders.build import build_dataset
from datasets_builders.formats.crayon import decode_ids
from datasets_builders.segment import detectron2
from datasets_builders.segment.cli import segment
from datasets_builders.segment.mask2former import ModelSpec, categories
from datasets_builders.segment.run import configure, segment_folder
from datasets_builders.store import ShardDataset, verify_dataset

app = typer.Typer()
app.command()(segment)
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), terminal_width=400)


@pytest.fixture(scope="module")
def inputs(world_images, tmp_path_factory) -> Path:
    """The six JPEGs, one PNG (listed first, so the builder looks it up first), a truncated JPEG, a GIF
    named .png (the builder stores only JPEG and PNG) and a file that is not listed at all."""
    folder = tmp_path_factory.mktemp("inputs")
    for picture in sorted(world_images.glob("*.jpg")):
        shutil.copyfile(picture, folder / picture.name)
    first = Image.open(world_images / "000000000001.jpg")
    first.save(folder / "0.png")
    first.save(folder / "fake.png", "GIF")
    (folder / "broken.jpg").write_bytes((world_images / "000000000001.jpg").read_bytes()[:600])
    (folder / "notes.txt").write_text("not listed")
    return folder


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def masks_measured(ids: np.ndarray, segment_id: int) -> tuple[int, list[int]]:
    ys, xs = np.nonzero(ids == segment_id)
    return len(xs), [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


@pytest.mark.slow
def test_tiny_model_to_valid_coco_panoptic_to_verified_crayon_shards(ray_cluster, inputs, tmp_path):
    out = tmp_path / "segmented"
    result = invoke("--images", str(inputs), "--out", str(out), "--tiny", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "annotations" / "panoptic_segmented.json").read_text())
    segments = sum(len(a["segments_info"]) for a in doc["annotations"])
    assert f"{out}: 9 images -> 7 segmented ({segments} segments), 2 rejected in" in result.output
    assert f"next: crayonflow build coco-panoptic --input {out} --out data/datasets/segmented-crayon" in result.output

    names = ["0.png"] + [f"{i:012d}.jpg" for i in range(1, 7)]  # ids: positions in the sorted listing
    assert [(i["id"], i["file_name"]) for i in doc["images"]] == list(enumerate(names, start=1))
    assert doc["categories"] == categories(ModelSpec(preset="tiny")).coco()
    for image, annotation in zip(doc["images"], doc["annotations"]):
        assert annotation["image_id"] == image["id"] and annotation["file_name"] == image["file_name"] + ".png"
        ids = decode_ids(np.asarray(Image.open(out / "annotations" / "panoptic_segmented" / annotation["file_name"])))
        assert ids.shape == (image["height"], image["width"])
        info = annotation["segments_info"]
        assert info and set(np.unique(ids)) - {0} == {s["id"] for s in info}  # PNG ids == segments_info ids
        for s in info:
            assert (s["area"], s["bbox"]) == masks_measured(ids, s["id"])
            assert 1 <= s["category_id"] <= 10 and s["iscrowd"] == 0 and 0.5 < s["score"] <= 1
        assert os.path.samefile(out / "images" / image["file_name"], inputs / image["file_name"])  # a hard link

    rejects = json.loads((out / "rejects.json").read_text())
    assert [r["file"] for r in rejects] == ["broken.jpg", "fake.png"]
    assert rejects[0]["reason"].startswith(f"image {inputs / 'broken.jpg'} cannot be decoded (OSError: ")
    assert rejects[1]["reason"] == f"image {inputs / 'fake.png'} is GIF; only JPEG and PNG are stored (as their bytes)"
    run = json.loads((out / "segment.json").read_text())
    assert run["counts"] == {"images": 9, "segmented": 7, "rejected": 2, "segments": segments}
    assert (run["model"], run["threshold"], run["mask_threshold"], run["label_ids_to_fuse"]) == \
        ("random:tiny", 0.5, 0.95, [])

    built = build_dataset("coco-panoptic", out, tmp_path / "shards")
    counts = built.manifest.counts
    assert (counts.read, counts.written, counts.rejected) == (7, 7, 0)
    assert verify_dataset(tmp_path / "shards").ok
    sample = next(ShardDataset(tmp_path / "shards").samples())
    assert sample.task == "crayon" and [s["semantic"] for s in sample.meta["segments"]] == \
        [s["category_id"] for s in doc["annotations"][0]["segments_info"]]  # CoLLaVO's s = label id + 1


@pytest.mark.slow
def test_one_and_two_actors_write_byte_identical_files(ray_cluster, inputs, tmp_path):
    config = configure("mask2former", checkpoint=None, preset="tiny", categories_file=None, threshold=0.5,
                       mask_threshold=0.95, batch_size=2)
    one = segment_folder(inputs, tmp_path / "one", config, actors=1)
    two = segment_folder(inputs, tmp_path / "two", config, actors=2)
    assert one.counts == two.counts and one.counts["segmented"] == 7
    assert all_files(tmp_path / "one") == all_files(tmp_path / "two")


def test_a_wrong_images_folder_a_missing_checkpoint_and_no_detectron2_exit_2_with_one_line(tmp_path, inputs,
                                                                                           monkeypatch):
    out = str(tmp_path / "out")
    wrong = invoke("--images", str(tmp_path / "nowhere"), "--out", out, "--tiny")
    assert wrong.exit_code == 2 and wrong.output.strip() == f"--images {tmp_path / 'nowhere'} is not a folder"
    missing = invoke("--images", str(inputs), "--out", out, "--checkpoint", str(tmp_path / "ckpt"))
    assert missing.exit_code == 2
    assert missing.output.strip() == (f"checkpoint folder {tmp_path / 'ckpt'} does not exist "
                                      "(models are loaded locally only, never downloaded)")
    monkeypatch.setattr(detectron2, "installed", lambda: False)
    no_d2 = invoke("--images", str(inputs), "--out", out, "--backend", "detectron2")
    assert no_d2.exit_code == 2 and no_d2.output.strip() == detectron2.INSTALL_HINT
    assert not (tmp_path / "out").exists()  # nothing was written
