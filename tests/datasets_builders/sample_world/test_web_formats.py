"""The sample world as img2dataset downloads (grit/, image-text/): img2dataset's layout and fields,
GRIT spans that are true of the scene, builds that reject only the deliberate dead links, and
the same bytes for the same seed."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datasets_builders.build import build_dataset
from datasets_builders.formats.boxes import strip_grounding
from datasets_builders.sample_world import grit, image_text
from datasets_builders.sample_world.common import WorldImage
from datasets_builders.sample_world.scene import generate_scene
from datasets_builders.sample_world.world import JPEG_QUALITY, split_of
from datasets_builders.store import ShardDataset
from tests.datasets_builders.sample_world.small_world import IMAGES
from tests.datasets_builders.sample_world.truth import background_is_true, denotes

STATUS = ["key", "status", "error_message", "width", "height", "original_width", "original_height", "exif", "sha256"]
GRIT_COLUMNS = ["id", "noun_chunks", "ref_exps", "clip_similarity_vitb32", "clip_similarity_vitl14"]
DEAD_KEY = "0000003"  # url 3 of every 25 is a dead link; with 20 images there is one


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def world_images(images: int, seed: int) -> list[WorldImage]:
    scenes = (generate_scene(seed, i) for i in range(images))
    return [WorldImage(i, i + 1, split_of(i), s, s.jpeg(JPEG_QUALITY), seed) for i, s in enumerate(scenes)]


@pytest.mark.parametrize("folder, columns", [("image-text", []), ("grit", GRIT_COLUMNS)])
def test_each_folder_is_img2dataset_output_with_one_dead_link(world, scenes, folder, columns):
    root = world / folder
    assert sorted(p.name for p in root.iterdir()) == ["00000.parquet", "00000.tar", "00000_stats.json"]
    rows = pq.read_table(root / "00000.parquet").to_pylist()
    assert [r["key"] for r in rows] == [f"{i:07d}" for i in range(IMAGES + 1)]
    assert [r["key"] for r in rows if r["status"] != "success"] == [DEAD_KEY]
    assert rows[3]["error_message"] == "HTTP Error 404: Not Found" and rows[3]["width"] is None
    stats = json.loads((root / "00000_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failed_to_download"]) == (IMAGES + 1, IMAGES, 1)
    members = tar_members(root / "00000.tar")
    done = [r for r in rows if r["status"] == "success"]
    assert sorted(members) == sorted(f"{r['key']}.{ext}" for r in done for ext in ("jpg", "json", "txt"))
    for image_id, row in enumerate(done, start=1):
        meta = json.loads(members[f"{row['key']}.json"])
        assert list(meta) == [*columns, "caption", "url", *STATUS]
        assert members[f"{row['key']}.jpg"] == scenes[image_id].jpeg(JPEG_QUALITY)
        size = (meta["width"], meta["height"])
        assert size == (meta["original_width"], meta["original_height"]) == scenes[image_id].size
        assert members[f"{row['key']}.txt"].decode() == meta["caption"] == row["caption"]
        assert meta["sha256"] == hashlib.sha256(members[f"{row['key']}.jpg"]).hexdigest()


def test_grit_spans_name_what_their_boxes_hold(world, scenes):
    members = tar_members(world / "grit" / "00000.tar")
    metas = [json.loads(data) for name, data in sorted(members.items()) if name.endswith(".json")]
    refs = 0
    for image_id, meta in enumerate(metas, start=1):
        scene, caption = scenes[image_id], meta["caption"]
        assert background_is_true(scene, caption)
        w, h = scene.size
        boxes = {_fractions(t.bbox, w, h): t for t in scene.things}
        stuff = {_fractions(s.bbox, w, h): s for s in scene.stuff}
        named = set()
        for start, end, *box, confidence in meta["noun_chunks"]:
            words = caption[int(start):int(end)]
            assert 0.6 <= confidence <= 0.95 and start == int(start)
            if tuple(box) in stuff:
                assert int(start) == 0 and background_is_true(scene, words)
            else:
                assert boxes[tuple(box)] in denotes(scene, words), (caption, words)
                named.add(boxes[tuple(box)].segment_id)
        assert named == {t.segment_id for t in scene.things}  # every object is a noun chunk
        confidences = [c[-1] for c in meta["noun_chunks"]]
        assert confidences == sorted(confidences, reverse=True)
        for start, end, *box, confidence in meta["ref_exps"]:
            assert denotes(scene, caption[int(start):int(end)]) == [boxes[tuple(box)]], caption[int(start):int(end)]
            assert any(c[0] == start and c[2:] == [*box, confidence] for c in meta["noun_chunks"])
            refs += 1
    assert refs >= IMAGES  # most objects can be singled out


def test_both_build_with_only_the_dead_link_rejected(world, tmp_path):
    results = {name: build_dataset(name, world / name, tmp_path / name) for name in ("image-text", "grit")}
    for name, result in results.items():
        counts = result.manifest.counts
        assert (counts.read, counts.records_written, counts.records_rejected) == (IMAGES + 1, IMAGES, 1)
        (reject,) = pq.read_table(tmp_path / name / "rejects.parquet").to_pylist()
        assert (reject["source_id"], reject["stage"]) == (DEAD_KEY, "read")
        assert reject["reason"].endswith("was not downloaded (failed_to_download: HTTP Error 404: Not Found)")
        assert result.manifest.repairs == {}
    assert results["image-text"].manifest.by_task == {"caption": IMAGES}
    grit_tasks = results["grit"].manifest.by_task
    assert grit_tasks["grounding"] == IMAGES and grit_tasks["refer"] == grit_tasks["identify"] >= IMAGES


def test_grounded_answers_keep_the_caption_as_published(world, tmp_path):
    build_dataset("grit", world / "grit", tmp_path / "grit")
    captions = {json.loads(d)["key"]: json.loads(d)["caption"]
                for n, d in tar_members(world / "grit" / "00000.tar").items() if n.endswith(".json")}
    grounded = [s for s in ShardDataset(tmp_path / "grit").samples() if s.task == "grounding"]
    assert len(grounded) == IMAGES
    for s in grounded:
        assert strip_grounding(s.turns[1].content) == captions[s.source.id]


def test_same_seed_same_bytes_over_several_shards_and_builders_read_them_all(tmp_path, monkeypatch):
    monkeypatch.setattr(image_text, "SAMPLES_PER_SHARD", 10)  # keys: 5-digit shard + 1-digit index
    digests = []
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        images = world_images(30, seed)
        grit.write(images, tmp_path / run / "grit", seed)
        image_text.write(images, tmp_path / run / "image-text", seed)
        digests.append({str(p.relative_to(tmp_path / run)): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / run).rglob("*")) if p.is_file()})
    assert digests[0] == digests[1]
    assert len(digests[0]) == 2 * 4 * 3  # 32 urls in shards of 10: 4 shards of tar, parquet, stats
    assert all(digests[0][name] != digests[2][name] for name in digests[0] if name.endswith(".tar"))
    counts = build_dataset("image-text", tmp_path / "a" / "image-text", tmp_path / "built").manifest.counts
    assert (counts.read, counts.written, counts.rejected) == (32, 30, 2)
    rejected = pq.read_table(tmp_path / "built" / "rejects.parquet").column("source_id").to_pylist()
    assert rejected == ["000003", "000028"]


def _fractions(bbox: tuple[int, int, int, int], w: int, h: int) -> tuple[float, float, float, float]:
    x, y, bw, bh = bbox
    return x / w, y / h, (x + bw) / w, (y + bh) / h
