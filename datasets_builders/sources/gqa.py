"""GQA (balanced questions 1.2) as Stanford ships it -> [vqa].

``questions1.2/<split>_balanced_questions.json`` (split: train, val, testdev, test, challenge),
each one JSON object mapping question id -> ``{imageId, question, answer, fullAnswer, types,
...}``; the photos in ``images/<imageId>.jpg``. Files sit in the input folder or one folder down.
The object is streamed as pairs (``json_stream.json_pairs``): GQA train's balanced file is 943k
questions, and only what a sample needs is kept.

One record is one question, one sample ``g<question id>``. As MiniGPT-v2 reads it
(minigptv2-data-spec.md 5), the short ``answer`` is the answer, processed; ``fullAnswer`` and the
question's types (structural, semantic, detailed) go into the meta. The test and challenge files
carry no answers: each question there is rejected with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.coco_images import locate_images, string
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, make_key, require
from datasets_builders.sources.images import load_image
from datasets_builders.sources.json_stream import json_pairs, top_level
from datasets_builders.sources.split_files import EntryRecord, SplitLayout, split_files
from datasets_builders.sources.vqa import interned, normalised_question
from datasets_builders.templates.render import render

NAME = "gqa"
VERSION = "1"
OPTIONS = ()
SPLITS = ("train", "val", "testdev", "test", "challenge")
_FILE = re.compile(r"^(train|val|testdev|test|challenge)_balanced_questions\.json$")


class Question(NamedTuple):
    question_id: str
    image_id: str
    question: str
    answer: Any  #: a string where answered
    full_answer: Any
    types: tuple[Any, Any, Any]  #: structural, semantic, detailed


def locate(path: Path, options: Options) -> SplitLayout:
    found = split_files(path, "*_balanced_questions.json", _FILE, "GQA")
    require(bool(found), path, "expected GQA files <split>_balanced_questions.json (questions1.2), here or one "
                               "folder down, with the photos in images/")
    return SplitLayout(path, tuple((s, found[s]) for s in SPLITS if s in found))


def read_records(layout: SplitLayout, split: str | None) -> Iterator[EntryRecord | Reject]:
    for name, path in layout.chosen(split):
        yield from _file_records(layout.root, name, path)


def to_samples(record: EntryRecord) -> Iterator[Outcome]:
    q = record.entry
    question = normalised_question(q.question_id, q.question)
    answer = blip_normalise(q.answer) if isinstance(q.answer, str) else ""
    if not answer:
        raise RecordError(f"no answer for question {q.question_id} in {record.split}_balanced_questions.json")
    file_name = f"{q.image_id}.jpg"
    image = load_image(record.image_dir / file_name)
    key = make_key(f"g{q.question_id}")
    fields = {"question": question, "answer": answer, "answers": {answer: 1}}
    structural, semantic, detailed = q.types
    meta = {"fields": fields, "image_id": q.image_id, "file_name": file_name, "full_answer": q.full_answer,
            "question_type": detailed, "structural": structural, "semantic": semantic}
    yield Sample(key=key, task="vqa", turns=render("vqa", fields, key=key, width=image.width, height=image.height),
                 source=record.source, split=record.split, image=image, meta=meta)


def _file_records(root: Path, split: str, path: Path) -> Iterator[EntryRecord | Reject]:
    require(top_level(path) == "map", path, "expected GQA questions: a JSON object of question id -> question")
    questions = []
    for index, (question_id, entry) in enumerate(json_pairs(path)):
        try:
            questions.append(_parse(question_id, entry))
        except ValueError as e:
            yield Reject(Source(NAME, question_id or f"{path.name}#{index}"), "read", f"{path.name} entry {index}: {e}")
    questions.sort(key=lambda q: (q.image_id, q.question_id))
    image_dir = locate_images(root, (f"{q.image_id}.jpg" for q in questions), fallback=root / "images")
    for q in questions:
        yield EntryRecord(Source(NAME, q.question_id), q, split, image_dir)


def _parse(question_id: str, entry: Any) -> Question:
    image_id = entry.get("imageId") if isinstance(entry, dict) else None
    if not isinstance(image_id, str) or not image_id or "/" in image_id or image_id.startswith("."):
        raise ValueError(f"imageId {image_id!r} is not a file name stem")
    types = entry.get("types") if isinstance(entry.get("types"), dict) else {}
    return Question(question_id, image_id, string(entry, "question"), interned(entry.get("answer")),
                    entry.get("fullAnswer"),
                    tuple(interned(types.get(k)) for k in ("structural", "semantic", "detailed")))  # type: ignore[arg-type]
