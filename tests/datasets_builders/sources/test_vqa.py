"""VQA v2 (visualqa.org layout) -> vqa samples: answer choice, exact turns, rejects, subtypes and splits."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.sources.vqa import choose_answer
from datasets_builders.store import ShardDataset, verify_dataset
from datasets_builders.templates.render import choose, pools


def questions_file(path: Path, subtype: str, questions: list) -> None:
    path.mkdir(parents=True, exist_ok=True)
    doc = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": subtype, "license": {},
           "questions": questions}
    (path / f"v2_OpenEnded_mscoco_{subtype}_questions.json").write_text(json.dumps(doc))


def annotations_file(path: Path, subtype: str, answers: dict[int, tuple[int, str, list[str]]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    annotations = [
        {"question_type": "what", "multiple_choice_answer": mca, "image_id": image_id, "answer_type": "other",
         "question_id": qid, "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                                         for i, a in enumerate(given)]}
        for qid, (image_id, mca, given) in answers.items()
    ]
    (path / f"v2_mscoco_{subtype}_annotations.json").write_text(
        json.dumps({"info": {}, "license": {}, "data_subtype": subtype, "annotations": annotations}))


def q(qid: int, image_id: int, text: str) -> dict:
    return {"image_id": image_id, "question": text, "question_id": qid}


def write_vqa(root: Path) -> Path:
    (root / "train2014").mkdir(parents=True)
    for image_id, size in ((1, (40, 30)), (2, (20, 20))):
        PILImage.new("RGB", size, "blue").save(root / "train2014" / f"COCO_train2014_{image_id:012d}.jpg", "JPEG")
    questions_file(root, "train2014", [
        q(21, 2, "What color is the cat?"), q(11, 1, "How many dogs?"), q(10, 1, "Is it raining?"),
        q(12, 1, "..."), q(13, 1, "What?"), q(50, 5, "Where?"), q(22, 2, "Who?"), {"image_id": 1, "question": "bad"}])
    annotations_file(root, "train2014", {
        21: (2, "gray", ["White", "white", "white.", "white", "gray", "Gray", "gray", "gray", "grey", "grey"]),
        11: (1, "3", ["2"] * 5 + ["two"] * 5),
        10: (1, "yes", ["yes"] * 9 + ["no"]),
        12: (1, "yes", ["yes"] * 10),
        13: (1, "!!", ["", "...", "#"] + [""] * 7),
        50: (5, "yes", ["yes"] * 10),
    })
    # val2014 the way many unzip it: Questions/ and Annotations/ folders, and no val2014 images here.
    questions_file(root / "Questions", "val2014", [q(90, 9, "Is this val?")])
    annotations_file(root / "Annotations", "val2014", {90: (9, "yes", ["yes"] * 10)})
    questions_file(root, "test2015", [q(70, 7, "Is this a test?")])  # the test sets ship no answers
    return root


def rejects(root: Path) -> list[tuple[str, str, str]]:
    return [(r["source_id"], r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()]


@pytest.mark.parametrize(("counts", "preferred", "expected"), [
    ({"yes": 9, "no": 1}, "no", "yes"),  # the most frequent wins over multiple_choice_answer
    ({"white": 4, "gray": 4, "grey": 2}, "gray", "gray"),  # a tie goes to multiple_choice_answer
    ({"two": 5, "2": 5}, "3", "2"),  # ... and, if that is not tied, to the alphabetically first
    ({}, "yes", "yes"),  # no usable answers: multiple_choice_answer
])
def test_the_answer_is_the_most_frequent_with_ties_broken_by_multiple_choice_then_alphabet(counts, preferred, expected):
    assert choose_answer(counts, preferred) == expected


def test_questions_become_vqa_samples_with_exact_turns_and_answer_counts(tmp_path):
    raw = write_vqa(tmp_path / "raw")
    build_dataset("vqa", raw, tmp_path / "vqa")
    out = {s.key: s for s in ShardDataset(tmp_path / "vqa").samples()}
    assert list(out) == ["q10", "q11", "q21"]  # grouped by image, then by question id
    cat = out["q21"]
    assert [(t.role, t.content) for t in cat.turns] == [
        ("user", pools()["vqa"][choose("vqa", "q21")].format("what color is the cat?")), ("assistant", "gray")]
    assert cat.meta["fields"] == {"question": "what color is the cat?", "answer": "gray",
                                  "answers": {"gray": 4, "white": 4, "grey": 2}}
    assert (cat.task, cat.split, cat.meta["image_id"], cat.meta["file_name"]) == (
        "vqa", "train", 2, "COCO_train2014_000000000002.jpg")
    assert (cat.image.width, cat.image.height) == (20, 20)
    assert out["q11"].turns[1].content == "2" and out["q10"].turns[1].content == "yes"
    assert out["q10"].meta["fields"]["answers"] == {"yes": 9, "no": 1}


def test_each_bad_question_is_rejected_with_a_reason_and_counts_reconcile(tmp_path):
    raw = write_vqa(tmp_path / "raw")
    manifest = build_dataset("vqa", raw, tmp_path / "vqa").manifest
    assert rejects(tmp_path / "vqa") == [
        ("70", "convert", "no answers for question 70 in test2015 (no annotations file)"),
        ("v2_OpenEnded_mscoco_train2014_questions.json#7", "read",
         "v2_OpenEnded_mscoco_train2014_questions.json entry 7: has no question_id"),
        ("12", "convert", "question 12 is empty after normalisation"),
        ("13", "convert", "question 13 has no answer that is non-empty after normalisation"),
        ("22", "convert", "no answers for question 22 in v2_mscoco_train2014_annotations.json"),
        ("50", "image", f"image file {raw / 'train2014' / 'COCO_train2014_000000000005.jpg'} is missing"),
        ("90", "image", f"image file {raw / 'val2014' / 'COCO_val2014_000000000009.jpg'} is missing"),
    ]
    c = manifest.counts
    assert (c.read, c.records_written, c.records_rejected, c.written) == (10, 3, 7, 3)
    assert c.read == c.records_written + c.records_rejected
    assert verify_dataset(tmp_path / "vqa").ok


def test_split_reads_only_its_subtypes_and_limit_caps_the_records_read(tmp_path):
    raw = write_vqa(tmp_path / "raw")
    val = build_dataset("vqa", raw, tmp_path / "val", split="val").manifest
    assert (val.counts.read, val.counts.records_rejected, val.counts.written) == (1, 1, 0)
    train = build_dataset("vqa", raw, tmp_path / "train", split="train").manifest
    assert (train.counts.read, train.by_split) == (8, {"train": 3})
    limited = build_dataset("vqa", raw, tmp_path / "three", limit=3).manifest
    assert (limited.counts.read, limited.counts.written) == (3, 1)  # q70 (test), the bad entry, q10 ...
    limited = build_dataset("vqa", raw, tmp_path / "four", limit=4).manifest
    assert (limited.counts.read, limited.counts.written) == (4, 2)  # ... and q11


def test_a_folder_without_questions_or_with_broken_json_is_an_input_error(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(InputFormatError) as e:
        build_dataset("vqa", tmp_path / "raw", tmp_path / "vqa")
    assert str(e.value) == (f"{tmp_path / 'raw'}: expected VQA v2 files v2_OpenEnded_mscoco_<subtype>_questions.json "
                            "(with v2_mscoco_<subtype>_annotations.json), here or one folder down")
    (tmp_path / "raw" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text('{"questions": [')
    with pytest.raises(InputFormatError, match=r"v2_OpenEnded_mscoco_val2014_questions\.json: not valid JSON"):
        build_dataset("vqa", tmp_path / "raw", tmp_path / "vqa")
    (tmp_path / "raw" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text('{"annotations": []}')
    with pytest.raises(InputFormatError, match="expected VQA questions: a JSON object with a list 'questions'"):
        build_dataset("vqa", tmp_path / "raw", tmp_path / "vqa")
