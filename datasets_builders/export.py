"""A built dataset in another project's format: LLaVA's conversation JSON, or the JSONs MiniGPT-v2's
dataset classes read; each with an image folder.

Why: LLaVA and the trainers that read LLaVA/ShareGPT-style multimodal JSON (its conversation
list: ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}``, ``<image>`` at the
start of the first human turn) can then train on what this project builds, without our loader.
Each distinct picture is written once, named by the xxh3 of its bytes (a refcoco picture with
five expressions is one file), with its stored bytes: never re-encoded. Text-only samples have no
``image`` key, as in LLaVA's own text mixes. Turns are written as stored; task identifiers
(``[refer]``) and boxes stay in the text, where MiniGPT-v2-style models read them.

MiniGPT-v2 (minigptv2-data-spec.md 6.2): its three Flickr30k classes read ``groundedcaption.json``
(``image_id``, ``grounded_caption``), ``captiontobbox.json`` (``image_id``, ``caption``, ``output``)
and ``phrasetobbox.json`` (``image_id``, ``phrase``, ``bbox``) with the pictures as
``<image_id>.jpg``; those are written from a flickr30k-entities dataset's grounding,
detection-caption and detection-phrase samples (the instruction templates are the classes' own).
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


#: task -> (MiniGPT-v2 file, entry from (sample, image id))
MINIGPTV2_FILES = {
    "grounding": ("groundedcaption.json",
                  lambda s, i: {"image_id": i, "grounded_caption": s.turns[1].content}),
    "detection-caption": ("captiontobbox.json",
                          lambda s, i: {"image_id": i, "caption": s.meta["fields"]["caption"],
                                        "output": s.turns[1].content}),
    "detection-phrase": ("phrasetobbox.json",
                         lambda s, i: {"image_id": i, "phrase": s.meta["fields"]["phrase"],
                                       "bbox": s.turns[1].content.split("</p> ", 1)[1]}),
}


def export_minigptv2(root: Path, out: Path, split: str | None = None) -> ExportReport:
    """MiniGPT-v2's Flickr30k JSONs from a flickr30k-entities dataset, and ``<image_id>.jpg`` files."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    files: dict[str, list[dict]] = {name: [] for name, _ in MINIGPTV2_FILES.values()}
    written: set[str] = set()
    with ShardDataset(root) as dataset:
        for sample in dataset.samples(check=True):
            if sample.task not in MINIGPTV2_FILES or (split is not None and sample.split != split):
                continue
            image_id = str(sample.meta["image_id"])
            if image_id not in written and sample.image is not None:
                (out / "images" / f"{image_id}.{sample.image.format}").write_bytes(sample.image.data)
                written.add(image_id)
            name, entry = MINIGPTV2_FILES[sample.task]
            files[name].append(entry(sample, image_id))
    if not any(files.values()):
        raise ValueError(f"{root}: no grounding, detection-caption or detection-phrase samples: MiniGPT-v2's files "
                         "come from a flickr30k-entities dataset")
    for name, entries in files.items():
        (out / name).write_text(json.dumps(entries, ensure_ascii=False, indent=1))
    return ExportReport(out / "groundedcaption.json", sum(len(e) for e in files.values()), len(written))
