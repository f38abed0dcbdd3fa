"""GQA (questions1.2 layout) -> vqa samples: the id -> question object streamed as pairs, the short
answer processed, full answer and types in meta, unanswered and malformed questions rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.store import ShardDataset


def question(image_id: str, text: str, answer: str | None) -> dict:
    doc = {"semantic": [], "entailed": [], "equivalent": [], "question": text, "imageId": image_id,
           "isBalanced": True, "groups": {"global": None, "local": "10c-table"},
           "types": {"detailed": "relS", "semantic": "rel", "structural": "query"}, "annotations": {}}
    return doc | ({"answer": answer, "fullAnswer": f"It is {answer}."} if answer is not None else {})


def write_gqa(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    PILImage.new("RGB", (50, 40), "gray").save(root / "images" / "2354786.jpg", "JPEG")
    (root / "questions1.2").mkdir()
    (root / "questions1.2" / "val_balanced_questions.json").write_text(json.dumps({
        "05451384": question("2354786", "What is on the table?", "Laptop"),
        "07333408": question("2354786", "Is the cup white?", "yes"),
        "00000001": question("../../etc", "Where?", "here")}))
    (root / "questions1.2" / "test_balanced_questions.json").write_text(json.dumps(
        {"20968379": question("n15740", "What color is the sky?", None)}))
    return root


def test_gqa_questions_become_vqa_samples_with_their_full_answer_and_types(tmp_path):
    result = build_dataset("gqa", write_gqa(tmp_path / "raw"), tmp_path / "gqa")
    samples = {s.key: s for s in ShardDataset(result.root).samples()}
    assert set(samples) == {"g05451384", "g07333408"}
    laptop = samples["g05451384"]
    assert laptop.turns[1].content == "laptop" and laptop.meta["fields"]["answers"] == {"laptop": 1}
    assert laptop.meta["full_answer"] == "It is Laptop." and laptop.meta["structural"] == "query"
    assert laptop.split == "val" and laptop.source.dataset == "gqa" and laptop.image.width == 50
    rejects = {r["source_id"]: r["reason"] for r in pq.read_table(result.root / "rejects.parquet").to_pylist()}
    assert rejects == {"00000001": "val_balanced_questions.json entry 2: imageId '../../etc' is not a file name stem",
                       "20968379": "no answer for question 20968379 in test_balanced_questions.json"}


def test_a_questions_file_that_is_not_an_object_is_an_input_error(tmp_path):
    root = write_gqa(tmp_path / "raw")
    (root / "questions1.2" / "val_balanced_questions.json").write_text("[]")
    with pytest.raises(InputFormatError, match=r"val_balanced_questions\.json: expected GQA questions"):
        build_dataset("gqa", root, tmp_path / "out", split="val")
