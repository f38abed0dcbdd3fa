"""The sample world on disk: real raw layouts, one split per image, exact and repeatable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets_builders.sample_world.scene import generate_scene
from datasets_builders.sample_world.world import FORMATS, SPLIT_FORMATS, split_of, write_sample_world
from tests.datasets_builders.sample_world.small_world import IMAGES, SEED, SPLITS, load


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_same_inputs_give_the_same_bytes_and_another_seed_differs(world, tmp_path):
    again = write_sample_world(tmp_path / "again", images=IMAGES, seed=SEED).out
    assert digests(again) == digests(world)
    other = digests(write_sample_world(tmp_path / "other", images=IMAGES, seed=SEED + 1).out)
    same = {name for name, digest in digests(world).items() if other.get(name) == digest}
    assert not any(name.endswith((".jpg", ".png", ".xml")) for name in same)


def test_summary_and_layout(world):
    assert load(world / "sample-world.json") == {
        "seed": SEED, "images": IMAGES, "val_scenes": 0, "splits": {"train": 16, "val": 2, "test": 2},
        "formats": list(FORMATS),
    }
    expected = {
        "coco-panoptic/annotations/panoptic_val2017.json", "coco-panoptic/annotations/panoptic_val2017/000000000009.png",
        "coco-panoptic/val2017/000000000009.jpg", "coco-panoptic/test2017/000000000010.jpg",
        "flickr30k-entities/Sentences/1000000000.txt", "flickr30k-entities/Annotations/1000000019.xml",
        "flickr30k-entities/flickr30k-images/1000000005.jpg", "flickr30k-entities/train.txt",
        "flickr30k-entities/val.txt", "flickr30k-entities/test.txt",
        "refcoco/instances.json", "refcoco/refs(unc).json", "refcoco/images/train2014/COCO_train2014_000000000020.jpg",
        "vqa/v2_OpenEnded_mscoco_test2014_questions.json", "vqa/v2_mscoco_train2014_annotations.json",
        "vqa/test2014/COCO_test2014_000000000020.jpg", "vqa/train2014/COCO_train2014_000000000001.jpg",
        "coco-captions/annotations/captions_train2017.json", "coco-captions/train2017/000000000001.jpg",
        "llava/conversation_58k.json", "llava/detail_23k.json", "llava/complex_reasoning_77k.json",
        "llava/coco/train2017/000000000001.jpg", "unnatural-instructions/core_data.jsonl",
        "okvqa/OpenEnded_mscoco_val2014_questions.json", "okvqa/mscoco_train2014_annotations.json",
        "okvqa/train2014/COCO_train2014_000000000001.jpg", "aokvqa/aokvqa_v1p0_test.json",
        "aokvqa/train2017/000000000001.jpg", "gqa/questions1.2/testdev_balanced_questions.json",
        "gqa/images/1.jpg", "textcaps/TextCaps_0.1_val.json", f"textcaps/train_images/{SEED:08x}00000001.jpg",
    }
    assert expected <= set(digests(world))
    assert not (world / "llava/coco/train2017/000000000009.jpg").exists()  # val image


def test_every_image_file_is_the_same_jpeg_and_linked_where_possible(world, scenes):
    for image_id, scene in scenes.items():
        split, fid = split_of(image_id - 1), 1_000_000_000 + image_id - 1
        paths = [
            world / f"coco-panoptic/{split}2017/{image_id:012d}.jpg",
            world / f"flickr30k-entities/flickr30k-images/{fid}.jpg",
            world / f"refcoco/images/train2014/COCO_train2014_{image_id:012d}.jpg",
            world / f"vqa/{split}2014/COCO_{split}2014_{image_id:012d}.jpg",
            world / f"coco-captions/{split}2017/{image_id:012d}.jpg",
        ] + ([world / f"llava/coco/train2017/{image_id:012d}.jpg"] if split == "train" else []) + (
            [world / f"okvqa/{split}2014/COCO_{split}2014_{image_id:012d}.jpg"] if split != "test" else []) + [
            world / f"aokvqa/{split}2017/{image_id:012d}.jpg", world / f"gqa/images/{image_id}.jpg"] + (
            [world / f"textcaps/train_images/{SEED:08x}{image_id:08x}.jpg"] if split != "test" else []) + [
            world / f"ocrvqa/images/{SEED:04d}{image_id:06d}.jpg"] + (
            [world / f"visual-genome/{('VG_100K', 'VG_100K_2')[image_id % 2]}/{image_id}.jpg"] if split == "train" else [])
        assert {p.read_bytes() for p in paths} == {scene.jpeg(90)}
        assert paths[0].stat().st_nlink == len(paths)  # one file, hard-linked everywhere


def test_each_image_has_one_split_in_every_format(world):
    found: dict[str, dict[int, set[str]]] = {}  # format -> image id -> splits
    def note(fmt, image_id, split):
        found.setdefault(fmt, {}).setdefault(image_id, set()).add(split)
    for split in SPLITS:
        for fmt, path in (("panoptic", f"coco-panoptic/annotations/panoptic_{split}2017.json"),
                          ("captions", f"coco-captions/annotations/captions_{split}2017.json"),
                          ("vqa", f"vqa/v2_OpenEnded_mscoco_{split}2014_questions.json")):
            doc = load(world / path)
            for entry in doc.get("images", doc.get("questions")):
                note(fmt, entry.get("image_id", entry.get("id")), split)
        for line in (world / f"flickr30k-entities/{split}.txt").read_text().split():
            note("flickr", int(line) - 1_000_000_000 + 1, split)
    for ref in load(world / "refcoco/refs(unc).json"):
        note("refcoco", ref["image_id"], ref["split"])
    for name in ("conversation_58k", "detail_23k", "complex_reasoning_77k"):
        for entry in load(world / f"llava/{name}.json"):
            note("llava", int(entry["id"]), "train")
    for fmt, splits in found.items():
        for image_id, seen in splits.items():
            assert seen == {split_of(image_id - 1)}, (fmt, image_id, seen)
    for fmt in ("panoptic", "captions", "vqa", "flickr", "refcoco"):
        assert set(found[fmt]) == set(range(1, IMAGES + 1)), fmt


def test_panoptic_pngs_match_the_json_exactly(world, scenes):
    channels_used = np.zeros(3, dtype=bool)
    for split in SPLITS:
        doc = load(world / f"coco-panoptic/annotations/panoptic_{split}2017.json")
        categories = {c["id"]: c for c in doc["categories"]}
        assert set(categories) == {1, 2, 3, 4, 110, 111, 112, 113, 114, 115}
        sizes = {i["id"]: (i["width"], i["height"]) for i in doc["images"]}
        for ann in doc["annotations"]:
            rgb = np.asarray(Image.open(world / f"coco-panoptic/annotations/panoptic_{split}2017" / ann["file_name"]))
            assert rgb.shape == (sizes[ann["image_id"]][1], sizes[ann["image_id"]][0], 3)
            r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
            ids = r + 256 * g + 65536 * b
            channels_used |= (rgb.reshape(-1, 3) > 0).any(axis=0)
            infos = ann["segments_info"]
            assert sorted(np.unique(ids).tolist()) == sorted(s["id"] for s in infos)
            assert 0 not in ids and len({s["id"] for s in infos}) == len(infos)
            for info in infos:
                ys, xs = np.nonzero(ids == info["id"])
                x, y = int(xs.min()), int(ys.min())
                assert info["area"] == len(xs)
                assert info["bbox"] == [x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1]
            scene = scenes[ann["image_id"]]
            shapes = sorted(categories[s["category_id"]]["name"] for s in infos if categories[s["category_id"]]["isthing"])
            assert shapes == sorted(t.shape for t in scene.things)
    assert channels_used.all()


def test_every_json_file_parses(world):
    files = [p for p in world.rglob("*.json")]
    # panoptic, refcoco, vqa, okvqa (train, val), aokvqa, captions, llava, img2dataset stats of grit and image-text, summary
    assert len(files) == 3 + 2 + 6 + 4 + 3 + 3 + 2 + 1 + 2 + 3 + 3 + 2 + 1  # gqa 3, textcaps 2, ocrvqa 1, vg 2
    for path in files:
        load(path)


def test_refuses_a_non_empty_folder_unless_told_and_then_keeps_other_files(tmp_path):
    out = tmp_path / "world"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_sample_world(out, images=2)
    (out / "vqa").mkdir()
    (out / "vqa" / "stale.json").write_text("{}")
    write_sample_world(out, images=2, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "vqa" / "stale.json").exists()
    assert load(out / "sample-world.json")["images"] == 2
    write_sample_world(out, images=3, overwrite=True)  # a world over a world
    assert load(out / "sample-world.json")["images"] == 3
    with pytest.raises(ValueError):
        write_sample_world(tmp_path / "empty", images=0)


def test_images_are_copied_where_hard_links_fail(tmp_path, monkeypatch):
    from datasets_builders.sample_world import common

    def no_links(src, dst):
        raise OSError("hard links not supported")

    monkeypatch.setattr(common.os, "link", no_links)
    out = write_sample_world(tmp_path / "copies", images=1).out
    first = out / "coco-panoptic/train2017/000000000001.jpg"
    copy = out / "coco-captions/train2017/000000000001.jpg"
    assert first.stat().st_nlink == 1 and copy.read_bytes() == first.read_bytes() == generate_scene(0, 0).jpeg(90)


def test_val_scenes_add_held_out_pictures_to_the_split_formats_only_and_leave_training_data_alone(world, tmp_path):
    bigger = write_sample_world(tmp_path / "bigger", images=IMAGES, seed=SEED, val_scenes=3).out
    assert load(bigger / "sample-world.json")["splits"] == {"train": 16, "val": 5, "test": 2}
    for folder in FORMATS:
        for path in sorted((world / folder).rglob("*")):
            twin = bigger / folder / path.relative_to(world / folder)
            if path.is_file() and "train" in path.name or folder not in SPLIT_FORMATS and path.is_file():
                assert twin.read_bytes() == path.read_bytes(), twin  # training data (and split-less formats) unchanged
    questions = load(bigger / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json")["questions"]
    assert {q["image_id"] for q in questions} >= {IMAGES + 1, IMAGES + 2, IMAGES + 3}  # the new scenes are asked about
