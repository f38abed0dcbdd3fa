"""Visual Genome (image_data.json, region_descriptions.json, VG_100K*/) -> refer and identify per
region under MiniGPT-v2's area limit, boxes in the 0..100 grid of the image's own size."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import Options
from datasets_builders.store import ShardDataset


def region(region_id: int, x: int, y: int, w: int, h: int, phrase: str) -> dict:
    return {"region_id": region_id, "width": w, "height": h, "image_id": 1, "phrase": phrase, "y": y, "x": x}


def write_vg(root: Path) -> Path:
    (root / "VG_100K_2").mkdir(parents=True)
    PILImage.new("RGB", (800, 600), "white").save(root / "VG_100K_2" / "1.jpg", "JPEG")
    (root / "image_data.json").write_text(json.dumps([
        {"width": 800, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg", "height": 600, "image_id": 1,
         "coco_id": None, "flickr_id": None},
        {"width": 800, "url": "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg", "height": 600, "image_id": 2}]))
    (root / "region_descriptions.json").write_text(json.dumps([
        {"id": 1, "regions": [region(1382, 421, 57, 82, 139, "the clock is green in colour"),
                              region(1383, 0, 0, 800, 600, "a street scene"),
                              region(1384, 700, 500, 200, 20, "a sign off the edge"),
                              region(1385, 10, 10, 20, 20, "...")]},
        {"id": 2, "regions": [region(1386, 1, 1, 10, 10, "a dot")]},
        {"id": 3, "regions": []}]))
    return root


def test_regions_under_the_area_limit_become_refer_and_identify_in_the_images_grid(tmp_path):
    result = build_dataset("visual-genome", write_vg(tmp_path / "raw"), tmp_path / "vg")
    samples = {s.key: s for s in ShardDataset(result.root).samples()}
    assert set(samples) == {"vg1382-refer", "vg1382-identify"}
    refer = samples["vg1382-refer"]
    assert refer.turns[1].content == "{<52><9><62><32>}"  # (421, 57, 503, 196) of 800 x 600, truncated percent
    assert "the clock is green in colour" in refer.turns[0].content and refer.split == "train"
    assert samples["vg1382-identify"].turns[1].content == "the clock is green in colour"
    rejects = sorted((r["source_id"], r["reason"]) for r in pq.read_table(result.root / "rejects.parquet").to_pylist())
    assert rejects[0][0] == "1" and "lies outside the 800x600 image" in rejects[0][1]
    assert rejects[1] == ("1", "image 1 region 3: region 1385: the phrase is empty after normalisation")
    assert rejects[2] == ("1", "image 1: 1 regions of 16,384 px or more left out (MiniGPT-v2's area filter, "
                               "--max-region-area)")
    assert rejects[3][0] == "2" and "VG_100K/2.jpg is missing" in rejects[3][1]
    assert rejects[4] == ("3", "image 3 is not in image_data.json")
    counts = result.manifest.counts
    assert (counts.read, counts.records_written, counts.records_rejected) == (3, 1, 2)


def test_the_area_limit_is_an_option(tmp_path):
    result = build_dataset("visual-genome", write_vg(tmp_path / "raw"), tmp_path / "vg",
                           options=Options(max_region_area=10**9))
    keys = {s.key for s in ShardDataset(result.root).samples()}
    assert "vg1383-refer" in keys and result.manifest.spec.parameters["max_region_area"] == 10**9
