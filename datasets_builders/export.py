"""A built dataset in the LLaVA conversation format: one JSON list plus an image folder.

Why: LLaVA and the trainers that read LLaVA/ShareGPT-style multimodal JSON (its conversation
list: ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}``, ``<image>`` at the
start of the first human turn) can then train on what this project builds, without our loader.
Each distinct picture is written once, named by the xxh3 of its bytes (a refcoco picture with
five expressions is one file), with its stored bytes: never re-encoded. Text-only samples have no
``image`` key, as in LLaVA's own text mixes. Turns are written as stored; task identifiers
(``[refer]``) and boxes stay in the text, where MiniGPT-v2-style models read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import xxhash

from datasets_builders.formats.schema import Sample
from datasets_builders.store import ShardDataset

IMAGE_TOKEN = "<image>"
ROLES = {"user": "human", "assistant": "gpt"}


@dataclass(frozen=True)
class ExportReport:
    json_path: Path
    samples: int
    images: int  #: distinct pictures written


def to_llava(sample: Sample, image_name: str | None) -> dict:
    """One sample as a LLaVA conversation entry (``image_name`` relative to the image folder)."""
    turns = [{"from": ROLES[t.role], "value": t.content} for t in sample.turns]
    entry: dict = {"id": sample.key}
    if image_name is not None:
        entry["image"] = image_name
        turns[0] = {**turns[0], "value": f"{IMAGE_TOKEN}\n{turns[0]['value']}"}
    return entry | {"conversations": turns, "task": sample.task, "split": sample.split}


def export_llava(root: Path, out: Path, split: str | None = None) -> ExportReport:
    """Write ``out/<dataset>.json`` and ``out/images/``; ``split``: only that split's samples."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries, written = [], set()
    with ShardDataset(root) as dataset:
        for sample in dataset.samples(check=True):
            if split is not None and sample.split != split:
                continue
            name = None
            if sample.image is not None:
                name = f"{xxhash.xxh3_64_hexdigest(sample.image.data)}.{sample.image.format}"
                if name not in written:
                    (out / "images" / name).write_bytes(sample.image.data)
                    written.add(name)
            entries.append(to_llava(sample, name))
    path = out / f"{Path(root).name}.json"
    path.write_text(json.dumps(entries, ensure_ascii=False, indent=1))
    return ExportReport(path, len(entries), len(written))
