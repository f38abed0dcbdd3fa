"""LLaVA-Instruct-150K conversation files -> multi-turn samples with no task identifier.

Why: MiniGPT-v2's stage 3 trains on LLaVA's detail, complex-reasoning and conversation files to
keep the model able to chat about an image (minigptv2-data-spec.md sections 2.4 and 5). What:
every ``*.json`` in the input folder whose top level is a list of ``{"id", "image",
"conversations"}`` entries is read; one entry is one record and becomes one sample. The turns
are the data (nothing is rendered from a template), cleaned as MiniGPT-v2's loaders do:

- the first human turn of an image entry loses ``<image>`` and every ``\\n``, then is stripped;
- in ``detail*`` and ``complex_reasoning*`` files the human turns go through ``blip_normalise``;
- answers, and conversation-file questions, stay as written.

Task from the file stem: ``detail*`` -> llava-detail, ``complex_reasoning*`` -> llava-reason,
anything else -> llava-conversation. Ids repeat across files (and inside the merged
``llava_instruct_150k.json``, which lists one image under each of its three kinds), so the
Source id is ``<stem>:<id>`` and a repeat within one file gets ``#2``, ``#3``... Images are COCO
train2017 (``000000033471.jpg``), found under the input folder; MiniGPT-v2's train2014 names
(``COCO_train2014_000000033471.jpg``) are accepted too. Entries without ``"image"`` (LLaVA-mix
has some) become text-only samples; an image path with folders (LLaVA-mix's
``coco/train2017/...``) is taken relative to the input folder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from datasets_builders.formats.schema import Sample, Source, Turn
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.contract import (
    InputFormatError,
    Options,
    RecordError,
    Reject,
    make_key,
    read_json,
    require,
)
from datasets_builders.sources.images import find_image_dir, load_image

NAME = "llava"
VERSION = "1"
OPTIONS = ()
SPLIT = "train"  # LLaVA-Instruct has no other split
ROLES = {"human": "user", "gpt": "assistant"}
NORMALISED_TASKS = ("llava-detail", "llava-reason")  # their instructions go through blip_normalise
TRAIN2014_PREFIX = "COCO_train2014_"  # MiniGPT-v2 reads the same ids from COCO train2014
IMAGE_PROBES = 20  # image names tried when looking for the image folder


@dataclass(frozen=True)
class Layout:
    root: Path
    files: tuple[Path, ...]  #: the LLaVA files, sorted by name
    image_dir: Path | None  #: where bare image names live; None when no entry names one
    image_prefix: str = ""  #: "" for train2017 names, TRAIN2014_PREFIX for train2014 files


@dataclass(frozen=True)
class LlavaRecord:
    source: Source
    key: str
    file: str  #: the JSON file's name
    id: str  #: the entry's "id"
    task: str
    conversations: Any  #: the entry's turns, checked in to_samples
    image: str | None  #: the entry's "image" as written; None for text-only entries
    image_path: Path | None


def task_for(stem: str) -> str:
    if stem.startswith("detail"):
        return "llava-detail"
    if stem.startswith("complex_reasoning"):
        return "llava-reason"
    return "llava-conversation"


def locate(path: Path, options: Options) -> Layout:
    files, names = [], []
    for candidate in sorted(path.glob("*.json")):
        entries = read_json(candidate)
        if _is_llava(entries):
            files.append(candidate)
            names += _bare_image_names(entries, IMAGE_PROBES - len(names))
    require(bool(files), path, 'expected LLaVA-Instruct JSON files (*.json, each a list of {"id", "image", '
                               '"conversations"} entries, e.g. conversation_58k.json)')
    image_dir, prefix = _find_images(path, names) if names else (None, "")
    return Layout(path, tuple(files), image_dir, prefix)


def read_records(layout: Layout, split: str | None) -> Iterator[LlavaRecord | Reject]:
    if split not in (None, SPLIT):
        return
    for path in layout.files:
        entries = read_json(path)
        if not _is_llava(entries):
            raise InputFormatError(f"{path}: no longer a list of LLaVA entries (it changed during the build)")
        records: list[LlavaRecord] = []
        seen: Counter[str] = Counter()
        for index, entry in enumerate(entries):
            entry_id = _entry_id(entry)
            if entry_id is None:
                yield Reject(Source(NAME, f"{path.stem}:[{index}]"), "read",
                             f'{path.name} entry {index}: no "id" (expected a string or number)')
                continue
            seen[entry_id] += 1
            records.append(_record(layout, path, entry, entry_id, seen[entry_id]))
        # Grouped by image so the image cache works; sorted() is stable, so repeats keep file order.
        yield from sorted(records, key=lambda r: (r.image or "", r.id))


def to_samples(record: LlavaRecord) -> Iterator[Sample]:
    turns = _turns(record)
    image = None
    if record.image is not None:
        if record.image_path is None:
            raise RecordError(f"{record.file} entry {record.id}: image {record.image!r} is not a file name "
                              "inside the input folder", "image")
        image = load_image(record.image_path)
    meta: dict[str, Any] = {"file": record.file, "image_id": record.id, "fields": {"rounds": len(turns) // 2}}
    if record.image is not None:
        meta["file_name"] = record.image
    yield Sample(key=record.key, task=record.task, turns=turns, source=record.source, split=SPLIT,
                 image=image, meta=meta)


def _is_llava(entries: Any) -> bool:
    return isinstance(entries, list) and any(isinstance(e, dict) and "conversations" in e for e in entries)


def _bare_image_names(entries: list[Any], wanted: int) -> list[str]:
    """Up to ``wanted`` image names without folders, in file order: probes for the image folder."""
    names = []
    for entry in entries:
        if len(names) >= wanted:
            break
        name = entry.get("image") if isinstance(entry, dict) else None
        if isinstance(name, str) and name and "/" not in name:
            names.append(name)
    return names


def _find_images(root: Path, names: list[str]) -> tuple[Path, str]:
    """The folder holding the entries' images, trying a few names (one may be missing) in both
    the train2017 and the train2014 naming."""
    for name in names:
        for prefix in ("", TRAIN2014_PREFIX):
            try:
                return find_image_dir(root, prefix + name), prefix
            except InputFormatError:
                continue
    raise InputFormatError(f"{root}: no folder (up to 3 levels down) holds the entries' images, e.g. {names[0]!r} "
                           f"or {TRAIN2014_PREFIX + names[0]!r} (COCO train2017 or train2014)")


def _entry_id(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    value = entry.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        return None
    return str(value)


def _record(layout: Layout, path: Path, entry: dict[str, Any], entry_id: str, occurrence: int) -> LlavaRecord:
    stem = path.stem
    if occurrence == 1:
        source, key = Source(NAME, f"{stem}:{entry_id}"), make_key(stem, entry_id)
    else:  # the same id again in this file: a different conversation about the same image
        source, key = Source(NAME, f"{stem}:{entry_id}#{occurrence}"), make_key(stem, entry_id, occurrence)
    image = entry.get("image")
    image_path = _image_path(layout, image) if isinstance(image, str) else None
    return LlavaRecord(source, key, path.name, entry_id, task_for(stem), entry.get("conversations"),
                       None if image is None else str(image), image_path)


def _image_path(layout: Layout, name: str) -> Path | None:
    """Where an entry's image is; None when the name cannot be an image under the input folder."""
    if not name:
        return None
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts:
        return None
    if len(parts) > 1:
        return layout.root.joinpath(*parts)
    if layout.image_dir is None:  # locate saw no bare names (the file changed since)
        return None
    return layout.image_dir / (layout.image_prefix + name)


def _turns(record: LlavaRecord) -> tuple[Turn, ...]:
    where = f"{record.file} entry {record.id}"
    turns = record.conversations
    if not isinstance(turns, list) or not turns:
        raise RecordError(f'{where}: "conversations" is missing, empty or not a list')
    if len(turns) % 2:
        raise RecordError(f"{where}: an odd number of turns ({len(turns)}); needs human/gpt pairs "
                          f"(turn {len(turns) - 1} has no answer)")
    out = []
    for i, turn in enumerate(turns):
        expected = "human" if i % 2 == 0 else "gpt"
        speaker = turn.get("from") if isinstance(turn, dict) else None
        if speaker != expected:
            raise RecordError(f"{where}: turn {i} is from {speaker!r}, expected {expected!r} "
                              "(strict human/gpt alternation)")
        value = turn.get("value")
        if not isinstance(value, str):
            raise RecordError(f'{where}: turn {i} ({speaker}) has no text "value"')
        text, cleaning = _clean(record, i, value)
        if not text.strip():
            raise RecordError(f"{where}: turn {i} ({speaker}) is empty{cleaning}")
        out.append(Turn(ROLES[speaker], text))
    return tuple(out)


def _clean(record: LlavaRecord, i: int, text: str) -> tuple[str, str]:
    """MiniGPT-v2's cleaning of turn ``i``, and how to say it in a reject reason."""
    done = []
    if i == 0 and record.image is not None:
        text = text.replace("<image>", "").replace("\n", "").strip()
        done.append("removing <image> and newlines")
    if i % 2 == 0 and record.task in NORMALISED_TASKS:
        text = blip_normalise(text)
        done.append("blip normalisation")
    return text, (" after " + " and ".join(done) if done else "")
