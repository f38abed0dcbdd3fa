"""A-OKVQA (allenai layout) -> vqa samples: direct answers counted, ties to the correct choice,
choices and rationales kept, the unanswered test split rejected with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.store import ShardDataset


def entry(qid: str, image_id: int, question: str, **answers) -> dict:
    return {"split": "x", "image_id": image_id, "question_id": qid, "question": question,
            "choices": ["boat", "car", "train", "plane"], **answers}


def write_aokvqa(root: Path) -> Path:
    (root / "coco" / "val2017").mkdir(parents=True)
    PILImage.new("RGB", (32, 24), "red").save(root / "coco" / "val2017" / "000000000042.jpg", "JPEG")
    (root / "annotations").mkdir()
    val = [entry("22MexNkBPpdZGX6sxbxVBH", 42, "What vehicle is this?", correct_choice_idx=1,
                 direct_answers=["car"] * 3 + ["Train"] * 3 + ["auto"] * 4, difficult_direct_answer=False,
                 rationales=["It has wheels.", "It is on a road.", "It has four doors."]),
           entry("2aBcD", 42, "What is it used for?", correct_choice_idx=0, direct_answers=[""] * 10,
                 difficult_direct_answer=True, rationales=[])]
    (root / "annotations" / "aokvqa_v1p0_val.json").write_text(json.dumps(val))
    (root / "annotations" / "aokvqa_v1p0_test.json").write_text(json.dumps([entry("T1", 43, "Why?")]))
    return root


def test_aokvqa_counts_direct_answers_breaks_ties_by_the_correct_choice_and_keeps_the_rest(tmp_path):
    result = build_dataset("aokvqa", write_aokvqa(tmp_path / "raw"), tmp_path / "aokvqa")
    (sample,) = ShardDataset(result.root).samples()
    assert sample.key == "a22MexNkBPpdZGX6sxbxVBH" and sample.split == "val" and sample.task == "vqa"
    assert sample.meta["fields"]["answers"] == {"auto": 4, "car": 3, "train": 3}
    assert sample.meta["fields"]["answer"] == "auto" and sample.turns[1].content == "auto"
    assert sample.meta["choices"] == ["boat", "car", "train", "plane"] and sample.meta["correct_choice_idx"] == 1
    assert sample.meta["rationales"][0] == "It has wheels." and sample.image.width == 32
    rejects = {r["source_id"]: r["reason"] for r in pq.read_table(result.root / "rejects.parquet").to_pylist()}
    assert rejects == {"2aBcD": "no direct answers for question 2aBcD", "T1": "no direct answers for question T1"}
    assert result.manifest.counts.read == 3


def test_a_tie_goes_to_the_correct_choice_and_a_file_that_is_not_a_list_is_an_input_error(tmp_path):
    root = write_aokvqa(tmp_path / "raw")
    path = root / "annotations" / "aokvqa_v1p0_val.json"
    doc = json.loads(path.read_text())
    doc[0]["direct_answers"] = ["car"] * 5 + ["train"] * 5
    path.write_text(json.dumps(doc))
    (sample,) = ShardDataset(build_dataset("aokvqa", root, tmp_path / "out", split="val").root).samples()
    assert sample.meta["fields"]["answer"] == "car"  # choices[1]: tied with "train", which sorts after it too
    doc[0]["correct_choice_idx"] = 2
    path.write_text(json.dumps(doc))
    (sample,) = ShardDataset(build_dataset("aokvqa", root, tmp_path / "out2", split="val").root).samples()
    assert sample.meta["fields"]["answer"] == "train"
    path.write_text(json.dumps({"questions": doc}))
    with pytest.raises(InputFormatError, match=r"aokvqa_v1p0_val\.json: expected A-OKVQA: a JSON list of questions"):
        build_dataset("aokvqa", root, tmp_path / "out3", split="val")
