"""RefCOCO (REFER layout) -> refer/identify samples: exact turns, rejects with reasons, splits, pickles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError, Options
from datasets_builders.store import ShardDataset, verify_dataset
from datasets_builders.templates.render import choose, pools

IMAGES = [(1, 640, 428), (2, 100, 50), (3, 100, 50)]  # image 3 is listed but its file is absent
ANNOTATIONS = {10: (1, [468.3, 0.91, 171.7, 116.12]), 20: (2, [10, 5, 30, 20]), 21: (2, [90, 5, 20, 20]),
               22: (2, [10, 5, 0, 20]), 30: (3, [0, 0, 10, 10])}


def file_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def ref(ref_id: int, ann_id: int, image_id: int, split: str, *raws: str) -> dict:
    sentences = [{"raw": r, "sent": "", "tokens": [], "sent_id": ref_id * 10 + i} for i, r in enumerate(raws)]
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": 1, "split": split,
            "file_name": f"x_{ann_id}.jpg", "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences}


REFS = [
    ref(5, 20, 2, "train", "Left DOG.", "the (brown) dog"),
    ref(0, 10, 1, "testA", "The Man, on the right!"),
    ref(1, 99, 2, "train", "ghost"),
    ref(2, 21, 2, "train", "off the edge"),
    ref(4, 22, 2, "train", "a line"),
    ref(6, 20, 2, "train", "...", "!!"),
    ref(7, 10, 1, "val", "man"),
    ref(8, 30, 3, "train", "no photo"),
    ref(9, 20, 4, "train", "unknown image"),
    {"ann_id": 20, "image_id": 2, "split": "train", "sentences": []},
]


def write_refcoco(root: Path, refs: list = REFS) -> Path:
    (root / "images" / "train2014").mkdir(parents=True)
    for image_id, w, h in IMAGES[:2]:
        PILImage.new("RGB", (w, h), "red").save(root / "images" / "train2014" / file_name(image_id), "JPEG")
    instances = {
        "images": [{"id": i, "file_name": file_name(i), "width": w, "height": h} for i, w, h in IMAGES],
        "annotations": [{"id": a, "image_id": i, "category_id": 1, "bbox": b, "area": 1.0, "iscrowd": 0}
                        for a, (i, b) in ANNOTATIONS.items()],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (root / "instances.json").write_text(json.dumps(instances))
    (root / "refs(unc).json").write_text(json.dumps(refs))
    return root


def samples(root: Path) -> dict:
    return {s.key: s for s in ShardDataset(root).samples()}


def rejects(root: Path) -> list[tuple[str, str, str]]:
    return [(r["source_id"], r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()]


def template(task: str, key: str) -> str:
    return pools()[task][choose(task, key)]


def test_the_spec_worked_example_becomes_a_refer_and_an_identify_sample(tmp_path):
    build_dataset("refcoco", write_refcoco(tmp_path / "raw"), tmp_path / "refcoco")
    out = samples(tmp_path / "refcoco")
    refer, identify = out["ref0-refer"], out["ref0-identify"]
    assert [(t.role, t.content) for t in refer.turns] == [
        ("user", template("refer", "ref0-refer").format("the man, on the right")),
        ("assistant", "{<73><0><100><27>}")]
    assert [(t.role, t.content) for t in identify.turns] == [
        ("user", template("identify", "ref0-identify").format("{<73><0><100><27>}")),
        ("assistant", "the man, on the right")]
    assert refer.split == identify.split == "testa" and refer.task == "refer" and identify.task == "identify"
    assert refer.meta["fields"] == {"expression": "the man, on the right", "box": [468.3, 0.91, 640.0, 117.03]}
    assert (refer.meta["image_id"], refer.meta["ann_id"], refer.meta["file_name"]) == (1, 10, file_name(1))
    assert (refer.image.width, refer.image.height, refer.image.format) == (640, 428, "jpg")
    assert refer.image.data == (tmp_path / "raw" / "images" / "train2014" / file_name(1)).read_bytes()


def test_every_sentence_is_kept_in_meta_and_the_chosen_one_is_the_expression(tmp_path):
    build_dataset("refcoco", write_refcoco(tmp_path / "raw"), tmp_path / "refcoco")
    out = samples(tmp_path / "refcoco")
    for key in ("ref5-refer", "ref5-identify"):
        meta = out[key].meta
        assert meta["sentences"] == ["left dog", "the brown dog"]
        assert meta["fields"]["expression"] == meta["sentences"][meta["sentence"]]
        assert meta["fields"]["box"] == [10.0, 5.0, 40.0, 25.0]
    assert out["ref5-refer"].turns[1].content == "{<10><10><40><50>}"


def test_each_bad_ref_is_rejected_with_a_reason_and_counts_reconcile(tmp_path):
    raw = write_refcoco(tmp_path / "raw")
    manifest = build_dataset("refcoco", raw, tmp_path / "refcoco").manifest
    missing = raw / "images" / "train2014" / file_name(3)
    assert rejects(tmp_path / "refcoco") == [
        ("refs(unc).json#9", "read", "refs(unc).json entry 9: has no ref_id"),
        ("1", "convert", "ref 1: annotation 99 is not in instances.json"),
        ("2", "convert", "ref 2: annotation 21: box [90, 5, 110, 25] (x0, y0, x1, y1) lies outside the 100x50 image"),
        ("4", "convert", "ref 4: annotation 22: box [10, 5, 10, 25] (x0, y0, x1, y1) has zero or negative area"),
        ("6", "convert", "ref 6: all 2 sentences are empty after normalisation"),
        ("8", "image", f"image file {missing} is missing"),
        ("9", "convert", "image 4 is not in instances.json"),
    ]
    c = manifest.counts
    assert (c.read, c.records_written, c.records_rejected, c.written, c.rejected) == (10, 3, 7, 6, 7)
    assert list(samples(tmp_path / "refcoco")) == [  # grouped by image, then by ref id
        "ref0-refer", "ref0-identify", "ref7-refer", "ref7-identify", "ref5-refer", "ref5-identify"]
    assert verify_dataset(tmp_path / "refcoco").ok


def test_an_empty_sentence_beside_good_ones_is_a_partial_reject(tmp_path):
    raw = write_refcoco(tmp_path / "raw", [ref(3, 20, 2, "train", "***", "the dog")])
    manifest = build_dataset("refcoco", raw, tmp_path / "refcoco").manifest
    assert rejects(tmp_path / "refcoco") == [("3", "convert", "ref 3: sentence 0 is empty after normalisation")]
    assert samples(tmp_path / "refcoco")["ref3-refer"].meta["sentences"] == ["the dog"]
    assert (manifest.counts.records_written, manifest.counts.records_rejected) == (1, 0)


def test_split_builds_only_that_split_and_limit_caps_the_records_read(tmp_path):
    raw = write_refcoco(tmp_path / "raw")
    only = build_dataset("refcoco", raw, tmp_path / "testa", split="testA").manifest
    assert (only.counts.read, only.counts.rejected, only.by_split) == (1, 0, {"testa": 2})
    broken = [{"image_id": 1, "split": "testA"}, {"ref_id": 3, "image_id": 1}, {"ref_id": 4, "split": "train"}]
    raw2 = write_refcoco(tmp_path / "raw2", [ref(0, 10, 1, "testA", "man"), *broken])
    build_dataset("refcoco", raw2, tmp_path / "testa2", split="testa")
    assert rejects(tmp_path / "testa2") == [  # broken refs of other splits are left out like good ones
        ("refs(unc).json#1", "read", "refs(unc).json entry 1: has no ref_id"),
        ("3", "read", "refs(unc).json entry 2: has no split")]
    limited = build_dataset("refcoco", raw, tmp_path / "two", limit=3).manifest
    assert (limited.counts.read, limited.counts.written) == (3, 4)  # the bad entry, then refs 0 and 7


def test_two_builds_of_the_same_input_write_the_same_bytes(tmp_path):
    raw = write_refcoco(tmp_path / "raw")
    build_dataset("refcoco", raw, tmp_path / "a" / "refcoco")
    build_dataset("refcoco", raw, tmp_path / "b" / "refcoco")
    shards = lambda root: {p.name: p.read_bytes() for p in sorted(root.glob("*.tar"))}  # noqa: E731
    assert shards(tmp_path / "a" / "refcoco") == shards(tmp_path / "b" / "refcoco") != {}


def test_a_folder_that_is_not_refcoco_fails_with_one_line(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "instances.json").write_text("{}")
    with pytest.raises(InputFormatError) as e:
        build_dataset("refcoco", tmp_path / "raw", tmp_path / "refcoco")
    assert str(e.value) == (f"{tmp_path / 'raw'}: expected instances.json and refs(<partition>).json "
                            "as the REFER toolkit lays out RefCOCO")
    (tmp_path / "raw" / "refs(unc).json").write_text("[1, 2")
    with pytest.raises(InputFormatError) as e:
        build_dataset("refcoco", tmp_path / "raw", tmp_path / "refcoco")
    assert str(e.value) == (f"{tmp_path / 'raw' / 'instances.json'}: "
                            "expected COCO instances: a JSON object with a list 'images'")
    (tmp_path / "raw" / "instances.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(InputFormatError, match=r"refs\(unc\)\.json: not valid JSON \(line 1, column 6"):
        build_dataset("refcoco", tmp_path / "raw", tmp_path / "refcoco")


def test_the_unc_partition_is_preferred_over_google(tmp_path):
    raw = write_refcoco(tmp_path / "raw", [ref(0, 10, 1, "train", "unc words")])
    (raw / "refs(google).json").write_text(json.dumps([ref(0, 10, 1, "train", "google words")]))
    build_dataset("refcoco", raw, tmp_path / "refcoco")
    assert samples(tmp_path / "refcoco")["ref0-refer"].meta["fields"]["expression"] == "unc words"


def python2_pickle(raw_sentence: bytes) -> bytes:
    """What REFER's Python 2 ``pickle.dump`` wrote: str values as byte strings (SHORT_BINSTRING)."""
    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b

    sentence = b"}(" + s(b"raw") + s(raw_sentence) + s(b"sent") + s(b"x") + b"u"
    ref_ = (b"}(" + s(b"ref_id") + b"K\x00" + s(b"ann_id") + b"K\x0a" + s(b"image_id") + b"K\x01"
            + s(b"split") + s(b"train") + s(b"sentences") + b"](" + sentence + b"eu")
    return b"\x80\x02](" + ref_ + b"e."


def test_a_pickle_needs_trust_pickle_and_is_read_like_python_2_wrote_it(tmp_path):
    raw = write_refcoco(tmp_path / "raw")
    (raw / "refs(unc).json").unlink()
    (raw / "refs(unc).p").write_bytes(python2_pickle("the café table".encode()))
    with pytest.raises(InputFormatError) as e:
        build_dataset("refcoco", raw, tmp_path / "refcoco")
    assert "--trust-pickle" in str(e.value) and "refs(unc).json" in str(e.value) and "\n" not in str(e.value)
    build_dataset("refcoco", raw, tmp_path / "refcoco", options=Options(trust_pickle=True))
    assert samples(tmp_path / "refcoco")["ref0-identify"].turns[1].content == "the café table"


class Payload:
    def __reduce__(self):
        return (print, ("unpickling ran code",))


def test_a_pickle_that_names_any_class_is_refused_even_when_trusted(tmp_path, capsys):
    raw = write_refcoco(tmp_path / "raw")
    (raw / "refs(unc).json").unlink()
    (raw / "refs(unc).p").write_bytes(pickle.dumps([Payload()]))
    with pytest.raises(InputFormatError, match=r"refs\(unc\)\.p: not a plain pickle of refs .*builtins\.print"):
        build_dataset("refcoco", raw, tmp_path / "refcoco", options=Options(trust_pickle=True))
    assert "unpickling ran code" not in capsys.readouterr().out
