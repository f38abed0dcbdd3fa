"""OCR-VQA (dataset.json + images/ as its download script leaves them) -> vqa samples, one per
question-answer pair, the cover named by id + the URL's extension, splits 1/2/3."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.store import ShardDataset

QUESTIONS = ["Who wrote this book?", "What is the title of this book?", "What is the genre of this book?"]


def write_ocrvqa(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    PILImage.new("RGB", (30, 45), "blue").save(root / "images" / "1590302079.jpg", "JPEG")
    PILImage.new("RGB", (30, 45), "red").save(root / "images" / "0446691437.jpg", "JPEG")
    PILImage.new("RGB", (30, 45), "red").save(root / "images" / "0000000003.gif", "GIF")
    books = {
        "1590302079": {"imageURL": "http://ecx.images-amazon.com/images/I/51Fa2K8KPuL.jpg", "questions": QUESTIONS,
                       "answers": ["Liz Lotz", "The Heart of the Buddha", ""], "title": "The Heart of the Buddha",
                       "authorName": "Liz Lotz", "genre": "Religion & Spirituality", "split": 1},
        "0446691437": {"imageURL": "http://ecx.images-amazon.com/images/I/41x.jpg", "questions": QUESTIONS[:1],
                       "answers": ["Someone"], "split": 2},
        "0000000003": {"imageURL": "http://ecx.images-amazon.com/images/I/41y.gif", "questions": QUESTIONS[:1],
                       "answers": ["Someone"], "split": 1},
        "0000000001": {"imageURL": "http://x/y.jpg", "questions": QUESTIONS, "answers": [], "split": 1},
        "0000000002": {"imageURL": "http://x/z.jpg", "questions": [], "answers": [], "split": 4},
    }
    (root / "dataset.json").write_text(json.dumps(books))
    return root


def test_each_pair_is_a_sample_and_bad_books_or_pairs_are_rejected_with_reasons(tmp_path):
    result = build_dataset("ocrvqa", write_ocrvqa(tmp_path / "raw"), tmp_path / "ocrvqa")
    samples = {s.key: s for s in ShardDataset(result.root).samples()}
    assert set(samples) == {"o1590302079-0", "o1590302079-1", "o0446691437-0"}
    assert samples["o1590302079-1"].turns[1].content == "the heart of the buddha"
    assert samples["o1590302079-0"].meta["genre"] == "Religion & Spirituality"
    assert samples["o0446691437-0"].split == "val" and samples["o0446691437-0"].meta["file_name"] == "0446691437.jpg"
    rejects = {r["source_id"]: r["reason"] for r in pq.read_table(result.root / "rejects.parquet").to_pylist()}
    assert rejects.pop("0000000003").endswith("0000000003.gif is GIF; only JPEG and PNG are stored (as their "
                                              "original bytes)")
    assert rejects == {"0000000001": "book 0000000001 has 3 questions but 0 answers",
                       "0000000002": "dataset.json entry 4: split 4 is not 1, 2 or 3",
                       "1590302079": "book 1590302079 pair 2: the answer is empty"}
    counts = result.manifest.counts
    assert counts.read == 5 and counts.records_written == 2
