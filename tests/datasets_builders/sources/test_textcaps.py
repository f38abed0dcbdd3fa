"""TextCaps (its JSON + TextVQA's train_images/) -> caption samples: one per caption entry, the
picture's size checked against the entry, references kept, the caption-less test file rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.store import ShardDataset


def caption(caption_id: int, image_id: str, text: str | None, size: tuple[int, int] = (40, 30)) -> dict:
    entry = {"image_id": image_id, "image_classes": ["Book"], "image_width": size[0], "image_height": size[1],
             "set_name": "train", "image_name": image_id, "image_path": f"train/{image_id}.jpg",
             "caption_id": caption_id, "reference_strs": ["A book called Dune.", "A red book."]}
    return entry | ({"caption_str": text, "caption_tokens": text.split()} if text is not None else {})


def write_textcaps(root: Path) -> Path:
    (root / "TextVQA" / "train_images").mkdir(parents=True)
    PILImage.new("RGB", (40, 30), "white").save(root / "TextVQA" / "train_images" / "011e7e629fb9ae7b.jpg", "JPEG")
    train = [caption(5, "011e7e629fb9ae7b", "A book called Dune."), caption(6, "011e7e629fb9ae7b", "A RED book!"),
             caption(7, "011e7e629fb9ae7b", "Too wide.", size=(41, 30))]
    (root / "TextCaps_0.1_train.json").write_text(json.dumps({"dataset_type": "train", "data": train}))
    (root / "TextCaps_0.1_test.json").write_text(json.dumps({"dataset_type": "test",
                                                             "data": [caption(9, "0a0bc91825468c45", None)]}))
    return root


def test_textcaps_captions_become_caption_samples_and_sizes_are_checked(tmp_path):
    result = build_dataset("textcaps", write_textcaps(tmp_path / "raw"), tmp_path / "textcaps")
    samples = {s.key: s for s in ShardDataset(result.root).samples()}
    assert set(samples) == {"t5", "t6"}
    assert samples["t6"].turns[1].content == "a red book" and samples["t6"].task == "caption"
    assert samples["t5"].meta["references"] == ["A book called Dune.", "A red book."] and samples["t5"].split == "train"
    rejects = {r["source_id"]: r["reason"] for r in pq.read_table(result.root / "rejects.parquet").to_pylist()}
    assert set(rejects) == {"7", "9"} and "41x30" in rejects["7"] and "no caption_str" in rejects["9"]
