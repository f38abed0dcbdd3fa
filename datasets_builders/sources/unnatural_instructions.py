"""Unnatural Instructions -> text-only instruction/answer samples.

Why: MiniGPT-v2 mixes these pure-language tasks into stage 3 so the LLM keeps its text ability
(minigptv2-data-spec.md sections 2.3 and 8). What: one record per JSONL line (or per entry of
MiniGPT-v2's JSON list), one sample per record, built as MiniGPT-v2's ``UnnaturalDataset`` does:
only ``instances[0]`` is used; the instruction is its ``instruction_with_input``, plus
``" " + constraints`` when ``constraints`` is not null; the answer is its ``output``; both go
through ``blip_normalise`` (lowercase, punctuation to spaces, 50 words). No image, no identifier.

Input, in the order of preference (the files overlap, so only one is read):
``filtered_unnatural_instruction.json`` (MiniGPT-v2's JSON list), ``core_data.jsonl``,
``core_data.zip``, ``full_data.jsonl``, ``full_data.zip``. The repository's zips are read as a
stream, never extracted; their records carry the name of the JSONL inside, so a zipped and an
unzipped copy give the same Source ids (``core_data.jsonl:<line>``) and keys.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

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

NAME = "unnatural-instructions"
VERSION = "1"
OPTIONS = ()
SPLIT = "train"  # the dataset has no other split
TASK = "text"
PREFERENCE = ("filtered_unnatural_instruction.json", "core_data.jsonl", "core_data.zip",
              "full_data.jsonl", "full_data.zip")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    path: Path  #: the file read
    name: str  #: the records' file name: the JSONL's own name, also inside a zip
    member: str | None = None  #: the zip member holding the JSONL


@dataclass(frozen=True)
class UnnaturalRecord:
    source: Source
    key: str
    where: str  #: "core_data.jsonl line 3", for reject reasons
    data: Any  #: the parsed line or list entry, checked in to_samples


def locate(path: Path, options: Options) -> Layout:
    present = [name for name in PREFERENCE if (path / name).is_file()]
    require(bool(present), path, "expected Unnatural Instructions data: " + ", ".join(PREFERENCE))
    if len(present) > 1:
        log.warning("%s: reading %s only; ignoring %s (the same instructions again)",
                    path, present[0], ", ".join(present[1:]))
    chosen = path / present[0]
    if chosen.suffix == ".json":
        require(isinstance(read_json(chosen), list), chosen, "expected a JSON list of Unnatural Instructions records")
        return Layout(chosen, chosen.name)
    if chosen.suffix == ".zip":
        return _locate_zip(chosen)
    return Layout(chosen, chosen.name)


def read_records(layout: Layout, split: str | None) -> Iterator[UnnaturalRecord | Reject]:
    if split not in (None, SPLIT):
        return
    stem = PurePosixPath(layout.name).stem
    if layout.path.suffix == ".json":
        for index, entry in enumerate(read_json(layout.path)):
            yield _record(layout, stem, index, f"{layout.name} entry {index}", entry)
        return
    with _lines(layout) as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue  # a blank line (a trailing newline) is not a record
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, nested too deep
                yield Reject(Source(NAME, f"{layout.name}:{number}"), "read",
                             f"{layout.name} line {number}: not valid JSON ({_why(e)})")
                continue
            yield _record(layout, stem, number, f"{layout.name} line {number}", data)


def to_samples(record: UnnaturalRecord) -> Iterator[Sample]:
    instruction, answer, constraints = _fields(record)
    yield Sample(
        key=record.key,
        task=TASK,
        turns=(Turn("user", instruction), Turn("assistant", answer)),
        source=record.source,
        split=SPLIT,
        meta={"fields": {"instruction": instruction, "answer": answer}, "constraints": constraints},
    )


def _locate_zip(path: Path) -> Layout:
    """The zip member named like the zip (``core_data.zip`` -> ``core_data.jsonl``)."""
    wanted = path.stem + ".jsonl"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise InputFormatError(f"{path}: not a readable zip archive ({e})") from None
    members = [n for n in names if PurePosixPath(n).name == wanted and not n.startswith("__MACOSX/")]
    require(len(members) == 1, path, f"expected one member named {wanted} (members in the archive: {len(names)}"
                                     + (f", {len(members)} of them named so)" if members else ")"))
    return Layout(path, wanted, members[0])


@contextmanager
def _lines(layout: Layout) -> Iterator[IO[bytes]]:
    """The JSONL's lines as bytes (decoded per line, so one bad line is one reject)."""
    if layout.member is None:
        with layout.path.open("rb") as f:
            yield f
        return
    with zipfile.ZipFile(layout.path) as archive, archive.open(layout.member) as f:
        yield f


def _why(error: ValueError | RecursionError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 at byte {error.start}"
    if isinstance(error, RecursionError):
        return "nested too deeply to parse"
    return str(error)


def _record(layout: Layout, stem: str, number: int, where: str, data: Any) -> UnnaturalRecord:
    return UnnaturalRecord(Source(NAME, f"{layout.name}:{number}"), make_key(stem, number), where, data)


def _fields(record: UnnaturalRecord) -> tuple[str, str, str | None]:
    """(instruction, answer, raw constraints) of instances[0], normalised as MiniGPT-v2 does."""
    where, data = record.where, record.data
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
    instances = data.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RecordError(f'{where}: field "instances" is missing, empty or not a list')
    first = instances[0]
    if not isinstance(first, dict):
        raise RecordError(f"{where}: instances[0] is not an object")
    given = _text(first, "instruction_with_input", where)
    output = _text(first, "output", where)
    constraints = first.get("constraints")  # absent is taken as null
    if constraints is not None and not isinstance(constraints, str):
        raise RecordError(f"{where}: instances[0].constraints is neither text nor null")
    instruction = blip_normalise(given if constraints is None else f"{given} {constraints}")
    answer = blip_normalise(output)
    if not instruction:
        raise RecordError(f"{where}: instances[0].instruction_with_input is empty after normalisation")
    if not answer:
        raise RecordError(f"{where}: instances[0].output is empty after normalisation")
    return instruction, answer, constraints


def _text(instance: dict[str, Any], field: str, where: str) -> str:
    value = instance.get(field)
    if not isinstance(value, str):
        raise RecordError(f"{where}: instances[0].{field} is missing or not text")
    return value
