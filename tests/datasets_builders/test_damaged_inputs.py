"""Every builder on a deliberately damaged copy of the sample world: the build goes on, each
damaged record lands in rejects.parquet with a reason naming the problem, the rest is written,
and the counts reconcile. A folder of the wrong format fails at once, in one line."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datasets_builders.build import build_dataset
from datasets_builders.registry import SOURCES
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.store import verify_dataset


def _edit_json(path: Path, edit: Callable[[object], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _damage_panoptic(root: Path) -> list[str]:
    from PIL import Image
    ann = root / "annotations"
    _truncate(root / "train2017" / "000000000001.jpg")

    def edit(doc):
        by_id = {a["image_id"]: a for a in doc["annotations"]}
        by_id[2]["segments_info"][0]["area"] += 1
        by_id[3]["segments_info"][0]["category_id"] = 999
    _edit_json(ann / "panoptic_train2017.json", edit)
    (ann / "panoptic_train2017" / "000000000004.png").unlink()
    png = ann / "panoptic_train2017" / "000000000005.png"
    pixels = Image.open(png).convert("RGB")
    pixels.paste((1, 2, 3), (0, 0, 3, 3))  # segment id 1 + 2*256 + 3*65536, not in segments_info
    pixels.save(png)
    return ["cannot be decoded", "area", "category id 999", "is missing", "missing from segments_info"]


def _damage_flickr(root: Path) -> list[str]:
    _truncate(root / "Annotations" / "1000000001.xml")
    xml = root / "Annotations" / "1000000002.xml"
    xml.write_text(xml.read_text().replace("<xmax>", "<xmax>9", 1))
    (root / "flickr30k-images" / "1000000003.jpg").unlink()
    sentences = root / "Sentences" / "1000000004.txt"
    lines = sentences.read_text().splitlines()
    sentences.write_text("\n".join([lines[0].replace("]", "", 1), *lines[1:]]) + "\n")
    return ["not well-formed XML", "outside", "is missing", "malformed"]


def _damage_refcoco(root: Path) -> list[str]:
    refs = root / "refs(unc).json"
    doc = json.loads(refs.read_text())
    doc[0]["ann_id"] = 999999
    doc[1]["sentences"] = [{**s, "raw": "...", "sent": "", "tokens": []} for s in doc[1]["sentences"]]
    refs.write_text(json.dumps(doc))
    victim = doc[2]["ann_id"]
    _edit_json(root / "instances.json",
               lambda d: next(a for a in d["annotations"] if a["id"] == victim)["bbox"].__setitem__(2, 100000))
    image = next(root.glob("images/train2014/COCO_train2014_000000000006.jpg"))
    image.unlink()
    return ["not in instances.json", "empty after normalisation", "outside", "is missing"]


def _damage_vqa(root: Path, prefix: str = "v2_") -> list[str]:
    """VQA v2's files; OK-VQA's are the same without the ``v2_`` prefix."""
    _edit_json(root / f"{prefix}mscoco_train2014_annotations.json", lambda d: d["annotations"].pop(0))
    _edit_json(root / f"{prefix}OpenEnded_mscoco_train2014_questions.json",
               lambda d: d["questions"][5].__setitem__("question", "..."))
    _truncate(root / "train2014" / "COCO_train2014_000000000007.jpg")
    return ["no answers", "empty after normalisation", "cannot be decoded"]


def _damage_aokvqa(root: Path) -> list[str]:
    def edit(entries: list) -> None:
        entries[0]["direct_answers"] = []
        entries[1]["question"] = "..."
        entries[2]["question_id"] = 7
    _edit_json(root / "aokvqa_v1p0_train.json", edit)
    (root / "train2017" / "000000000007.jpg").unlink()
    return ["no direct answers", "empty after normalisation", "not a non-empty string", "is missing"]


def _damage_gqa(root: Path) -> list[str]:
    def edit(questions: dict) -> None:
        first, second, third = list(questions)[:3]
        del questions[first]["answer"]  # as in GQA's test files
        questions[second]["imageId"] = "../escape"
        questions[third]["imageId"] = "999999"
    _edit_json(root / "questions1.2" / "train_balanced_questions.json", edit)
    return ["no answer for question", "not a file name stem", "is missing"]


def _damage_textcaps(root: Path) -> list[str]:
    def edit(doc: dict) -> None:
        doc["data"][0]["caption_str"] = " ... "
        doc["data"][1]["image_width"] += 1
        doc["data"][2]["image_id"] = "../x"
    _edit_json(root / "TextCaps_0.1_train.json", edit)
    return ["empty after normalisation", "but the annotation says", "not a file name stem"]


def _damage_ocrvqa(root: Path) -> list[str]:
    def edit(books: dict) -> None:
        first, second, third = list(books)[:3]
        books[first]["answers"] = books[first]["answers"][:-1]
        books[second]["split"] = 7
        books[third]["questions"][0] = " ... "
    _edit_json(root / "dataset.json", edit)
    return ["questions but", "is not 1, 2 or 3", "the question is empty"]


def _damage_visual_genome(root: Path) -> list[str]:
    def regions(doc: list) -> None:
        doc[0]["regions"][0]["phrase"] = " ... "
        doc[1]["regions"][0]["width"] = 10_000
        doc[2]["id"] = "x"
    _edit_json(root / "region_descriptions.json", regions)
    _edit_json(root / "image_data.json", lambda doc: doc[3].__setitem__("url", "https://example.org/elsewhere/1.jpg"))
    return ["the phrase is empty", "outside the", "no integer id", "no VG_100K(_2) url"]


def _damage_captions(root: Path) -> list[str]:
    _edit_json(root / "annotations" / "captions_train2017.json",
               lambda d: d["annotations"][0].__setitem__("caption", " ... "))
    (root / "train2017" / "000000000008.jpg").unlink()
    return ["empty after normalisation", "is missing"]


def _damage_llava(root: Path) -> list[str]:
    path = root / "conversation_58k.json"
    doc = json.loads(path.read_text())
    doc[0]["conversations"][1]["from"] = "human"
    path.write_text(json.dumps(doc))
    (root / "coco" / "train2017" / f"{doc[1]['image']}").unlink()
    return ["turn 1", "is missing"]


def _damage_unnatural(root: Path) -> list[str]:
    path = root / "core_data.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-5]  # cut off the end of one JSON line
    record = json.loads(lines[4])
    record["instances"] = []
    lines[4] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    return ["line 4", "instances"]


def _rewrite_tar(path: Path, edit: Callable[[dict[str, bytes]], None]) -> None:
    """Rewrite an img2dataset shard with ``edit`` applied to its members (name -> bytes)."""
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    edit(members)
    with tarfile.open(path, "w") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _json_members(members: dict[str, bytes]) -> list[str]:
    return sorted(n for n in members if n.endswith(".json"))


def _damage_image_text(root: Path) -> list[str]:
    def edit(members):
        first, second = _json_members(members)[:2]
        jpg = first.replace(".json", ".jpg")
        members[jpg] = members[jpg][: len(members[jpg]) // 3]
        members[second] = b"{not json"
    _rewrite_tar(root / "00000.tar", edit)
    return ["cannot be decoded", "not valid JSON", "not downloaded"]


def _damage_grit(root: Path) -> list[str]:
    def edit(members):
        first, second = _json_members(members)[:2]
        doc = json.loads(members[first])
        doc["noun_chunks"][0][4] = 1.5  # x_max beyond the image
        members[first] = json.dumps(doc).encode()
        doc = json.loads(members[second])
        doc["original_width"] = doc["width"] * 2  # the download padded or cropped the picture
        members[second] = json.dumps(doc).encode()
    _rewrite_tar(root / "00000.tar", edit)
    return ["outside 0..1", "aspect ratio", "not downloaded"]


DAMAGE = {
    "coco-panoptic": _damage_panoptic,
    "flickr30k-entities": _damage_flickr,
    "refcoco": _damage_refcoco,
    "vqa": _damage_vqa,
    "okvqa": lambda root: _damage_vqa(root, prefix=""),
    "aokvqa": _damage_aokvqa,
    "gqa": _damage_gqa,
    "textcaps": _damage_textcaps,
    "ocrvqa": _damage_ocrvqa,
    "visual-genome": _damage_visual_genome,
    "coco-captions": _damage_captions,
    "llava": _damage_llava,
    "unnatural-instructions": _damage_unnatural,
    "grit": _damage_grit,
    "image-text": _damage_image_text,
}


def test_every_builder_has_a_damage_case():
    assert set(DAMAGE) == set(SOURCES)


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_records_are_rejected_with_reasons_and_the_rest_is_built(world, tmp_path, name):
    raw = tmp_path / "raw"
    shutil.copytree(world / name, raw)
    expected = DAMAGE[name](raw)
    clean = build_dataset(name, world / name, tmp_path / "clean").manifest.counts

    result = build_dataset(name, raw, tmp_path / "damaged")
    counts = result.manifest.counts
    rejects = pq.read_table(result.root / "rejects.parquet").to_pylist()
    reasons = [r["reason"] for r in rejects]
    for fragment in expected:
        assert any(fragment in reason for reason in reasons), (fragment, reasons)
    assert counts.read == counts.records_written + counts.records_rejected
    assert counts.read == clean.read
    assert 0 < counts.records_rejected < counts.read // 2 and counts.written < clean.written  # the rest is built
    assert all(r["source_dataset"] == name and r["stage"] and r["reason"] for r in rejects)
    assert verify_dataset(result.root).ok


@pytest.mark.parametrize("name", list(SOURCES))
def test_a_folder_of_another_format_fails_at_once_in_one_line(world, tmp_path, name):
    other = next(n for n in SOURCES if n != name and not (name == "unnatural-instructions" and n == "llava"))
    with pytest.raises(InputFormatError) as failure:
        build_dataset(name, world / other, tmp_path / "out")
    assert "\n" not in str(failure.value) and str(world / other) in str(failure.value)
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(InputFormatError, match="no such folder"):
        build_dataset(name, tmp_path / "missing", tmp_path / "out")
