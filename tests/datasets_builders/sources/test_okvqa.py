"""OK-VQA (okvqa.allenai.org layout) -> vqa samples through the VQA v2 reader: its own file names,
``raw_answer`` beside ``answer``, no ``multiple_choice_answer``, its sources named okvqa."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.store import ShardDataset


def write_okvqa(root: Path) -> Path:
    """train2014 in the folder, val2014's files one folder down as some unzip them."""
    (root / "train2014").mkdir(parents=True)
    PILImage.new("RGB", (40, 30), "green").save(root / "train2014" / "COCO_train2014_000000000001.jpg", "JPEG")
    questions = [{"image_id": 1, "question": "What sport can you use this for?", "question_id": 10},
                 {"image_id": 1, "question": "What is the man holding?", "question_id": 11},
                 {"image_id": 1, "question": "Which country invented this?", "question_id": 12}]
    answers = {10: ["race", "racing", "racing", "motocross", "motocross"] * 2,  # tie: racing / motocross
               11: ["kite"] * 10}
    annotations = [{"image_id": 1, "answer_type": "other", "question_type": "eight", "question_id": qid,
                    "confidence": 3, "answers": [{"answer_id": i + 1, "raw_answer": a.upper(), "answer_confidence":
                                                  "yes", "answer": a} for i, a in enumerate(given)]}
                   for qid, given in answers.items()]
    head = {"info": {}, "license": {}, "data_subtype": "train2014"}
    (root / "OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps({**head, "questions": questions}))
    (root / "mscoco_train2014_annotations.json").write_text(json.dumps({**head, "annotations": annotations}))
    (root / "val").mkdir()
    (root / "val" / "OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(
        {**head, "data_subtype": "val2014", "questions": []}))
    return root


def test_okvqa_builds_through_the_vqa_reader_with_its_own_names(tmp_path):
    result = build_dataset("okvqa", write_okvqa(tmp_path / "raw"), tmp_path / "okvqa")
    samples = {s.key: s for s in ShardDataset(result.root).samples()}
    assert set(samples) == {"q10", "q11"}
    assert samples["q10"].meta["fields"]["answer"] == "motocross"  # no multiple_choice_answer: alphabetical
    assert samples["q10"].meta["fields"]["answers"] == {"motocross": 4, "racing": 4, "race": 2}
    assert samples["q11"].turns[1].content == "kite" and samples["q11"].meta["question_type"] == "eight"
    assert samples["q11"].source.dataset == "okvqa" and samples["q11"].task == "vqa"
    rejects = pq.read_table(result.root / "rejects.parquet").to_pylist()
    assert [(r["source_id"], r["reason"]) for r in rejects] == [
        ("12", "no answers for question 12 in mscoco_train2014_annotations.json")]
    assert result.manifest.counts.read == 3 and result.manifest.counts.written == 2


def test_vqa_v2_files_are_not_okvqa_files_and_the_message_says_what_was_expected(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "v2_OpenEnded_mscoco_train2014_questions.json").write_text('{"questions": []}')
    with pytest.raises(InputFormatError) as e:
        build_dataset("okvqa", tmp_path / "raw", tmp_path / "out")
    assert str(e.value) == (f"{tmp_path / 'raw'}: expected OK-VQA files OpenEnded_mscoco_<subtype>_questions.json "
                            "(with mscoco_<subtype>_annotations.json), here or one folder down")
