"""Every builder on a generated sample world: counts, identifiers, boxes, answers that parse back.

The sample world is clean, so nothing may be rejected; every answer must parse back to the
structured fields it was rendered from, and re-rendering the fields gives the stored text.
"""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from datasets_builders.build import build_dataset
from datasets_builders.formats.boxes import BOX, PixelBox, normalise, parse_box, parse_grounded, strip_grounding
from datasets_builders.formats.crayon import read_crayon
from datasets_builders.formats.text import blip_normalise
from datasets_builders.registry import SOURCES
from datasets_builders.store import ShardDataset, verify_dataset
from datasets_builders.templates.render import render, unit_box

TASKS = {
    "coco-panoptic": {"crayon"},
    "flickr30k-entities": {"grounding", "detection-caption", "detection-phrase"},
    "refcoco": {"refer", "identify"},
    "vqa": {"vqa"},
    "okvqa": {"vqa"},
    "aokvqa": {"vqa"},
    "gqa": {"vqa"},
    "textcaps": {"caption"},
    "ocrvqa": {"vqa"},
    "visual-genome": {"refer", "identify"},
    "coco-captions": {"caption"},
    "llava": {"llava-conversation", "llava-detail", "llava-reason"},
    "unnatural-instructions": {"text"},
    "grit": {"grounding", "refer", "identify"},
    "image-text": {"caption"},
}
WEB = ("grit", "image-text")  # img2dataset layouts: no splits, and the world plants one dead link each
IDENTIFIER = {"grounding": "[grounding]", "detection-caption": "[detection]", "detection-phrase": "[detection]",
              "refer": "[refer]", "identify": "[identify]", "vqa": "[vqa]", "caption": "[caption]"}
CRAYON_ITEM = re.compile(r"\(#(\d+) ([a-z ]+)\) (\[\d\.\d\d, \d\.\d\d, \d\.\d\d, \d\.\d\d\])")


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    return {name: build_dataset(name, world / name, out / name) for name in SOURCES}


def test_the_registry_and_this_test_know_the_same_builders():
    assert set(SOURCES) == set(TASKS)


@pytest.mark.parametrize("name", list(TASKS))
def test_builder_writes_every_record_of_the_clean_world_with_its_tasks(built, name):
    result = built[name]
    counts = result.manifest.counts
    dead_links = 1 if name in WEB else 0
    filtered = 0
    if name == "visual-genome":  # regions over MiniGPT-v2's area limit: one row per image, none of it damage
        reasons = [r["reason"] for r in pq.read_table(result.root / "rejects.parquet").to_pylist()]
        assert all("MiniGPT-v2's area filter" in reason for reason in reasons), reasons
        filtered = len(reasons)
    assert counts.read > 0 and counts.rejected == dead_links + filtered, result.manifest.to_json()
    assert counts.read == counts.records_written + dead_links
    assert set(result.manifest.by_task) == TASKS[name]
    assert verify_dataset(result.root).ok
    urls = [str(p) for p in sorted(result.root.glob("*.tar"))]
    assert sum(1 for _ in wds.WebDataset(urls, shardshuffle=False)) == counts.written
    expected_splits = ({"train"} if name in ("llava", "unnatural-instructions", "visual-genome", *WEB)
                       else {"train", "val"} if name in ("okvqa", "textcaps")  # no test set / no test captions
                       else {"train", "val", "testdev"} if name == "gqa"  # GQA's answered test split
                       else {"train", "val", "test"})
    assert set(result.manifest.by_split) == expected_splits


@pytest.mark.parametrize("name", list(TASKS))
def test_every_sample_carries_its_identifier_and_valid_boxes(built, name):
    for sample in ShardDataset(built[name].root).samples():
        first_user = sample.turns[0].content
        if sample.task in IDENTIFIER:
            assert first_user.startswith(IDENTIFIER[sample.task]), (sample.key, first_user)
        else:
            assert not first_user.startswith("["), (sample.key, first_user)
        for turn in sample.turns:
            for box in BOX.finditer(turn.content):
                assert all(0 <= v <= 100 for v in parse_box(box.group(0)))
        assert (sample.image is None) == (sample.task == "text")


@pytest.mark.parametrize("name", [n for n in TASKS if n not in ("llava", "unnatural-instructions")])  # templated
def test_answers_parse_back_to_the_fields_and_re_render_identically(built, name):
    for sample in ShardDataset(built[name].root).samples():
        fields, (w, h) = sample.meta["fields"], (sample.image.width, sample.image.height)
        assert render(sample.task, fields, key=sample.key, width=w, height=h) == sample.turns
        answer = sample.turns[1].content
        if sample.task == "refer":
            assert parse_box(answer) == normalise(PixelBox(*fields["box"]), w, h)
        elif sample.task == "identify":
            assert parse_box(BOX.search(sample.turns[0].content).group(0)) == normalise(PixelBox(*fields["box"]), w, h)
            assert answer == fields["expression"]
        elif sample.task in ("grounding", "detection-caption"):
            spans = sorted(fields["phrases"], key=lambda p: p["start"])
            expected = [(fields["caption"][p["start"]:p["end"]], [normalise(PixelBox(*b), w, h) for b in p["boxes"]])
                        for p in spans]
            assert parse_grounded(answer) == expected
            if sample.task == "grounding":
                assert strip_grounding(answer) == fields["caption"]
        elif sample.task == "detection-phrase":
            assert parse_grounded(answer) == [(fields["phrase"], [normalise(PixelBox(*b), w, h) for b in fields["boxes"]])]
        elif sample.task in ("vqa", "caption"):
            assert answer == blip_normalise(answer) and answer
        elif sample.task == "crayon":
            _check_crayon(sample, fields, w, h)


def _check_crayon(sample, fields, w, h):
    semantic, numbering = read_crayon(sample.extras["crayon.png"])
    assert semantic.shape == (h, w)
    listed = CRAYON_ITEM.findall(sample.turns[3].content)
    assert [(int(n), c, box) for n, c, box in listed] == [
        (s["number"], s["class"], unit_box(s["box"], w, h)) for s in fields["segments"]]
    for s in sample.meta["segments"]:  # the map agrees with every segment's number and area
        x0, y0, x1, y1 = s["box"]
        inside = (semantic[y0:y1, x0:x1] == s["semantic"]) & (numbering[y0:y1, x0:x1] == s["number"])
        assert inside.sum() == s["area"]


def test_the_same_scene_has_the_same_split_in_every_dataset(built):
    splits: dict[int, set[str]] = {}
    for name in ("coco-panoptic", "refcoco", "vqa", "coco-captions"):
        for sample in ShardDataset(built[name].root).samples():
            splits.setdefault(int(sample.meta["image_id"]), set()).add(sample.split)
    assert splits and all(len(s) == 1 for s in splits.values())
