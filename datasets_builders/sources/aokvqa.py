"""A-OKVQA as allenai ships it -> [vqa].

``aokvqa_v1p0_<split>.json`` (train, val, test), each a JSON list of questions about COCO 2017
photos: ``question_id`` (a string), ``image_id`` (COCO 2017), ``question``, ``choices`` (four),
``correct_choice_idx``, ``direct_answers`` (ten free-form answers), ``difficult_direct_answer``,
``rationales`` (three sentences); the test split has no answers. The files sit in the input folder
or one folder down, the photos in ``<split>2017/<image_id:012d>.jpg`` wherever the first few are
found (as COCO ships them).

One record is one question, one sample ``a<question_id>``. MiniGPT-v2 (minigptv2-data-spec.md 5)
trains on one weighted random entry of ``direct_answers``: all normalised direct answers and their
counts go into ``fields["answers"]`` so training can draw the same way, and the stored answer is
the most frequent, a tie going to the correct choice when it is among the tied (else
alphabetical, as ``vqa.choose_answer``). Choices, the correct index, rationales and the
difficulty flag are kept in the sample's meta; a question without direct answers (the test split)
is rejected with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.coco_images import integer, locate_images, parse_entries, string
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, make_key, require
from datasets_builders.sources.images import load_image
from datasets_builders.sources.json_stream import json_items, top_level
from datasets_builders.sources.split_files import EntryRecord, SplitLayout, split_files
from datasets_builders.sources.vqa import answer_counts, choose_answer, normalised_question
from datasets_builders.templates.render import render

NAME = "aokvqa"
VERSION = "1"
OPTIONS = ()
_FILE = re.compile(r"^aokvqa_v\d+p\d+_(train|val|test)\.json$")  #: group 1: the split


class Question(NamedTuple):
    question_id: str
    image_id: int
    question: str
    choices: tuple[Any, ...]
    correct_choice_idx: Any  #: an int where answered
    direct_answers: tuple[Any, ...]
    rationales: tuple[Any, ...]
    difficult: Any


def locate(path: Path, options: Options) -> SplitLayout:
    found = split_files(path, "aokvqa_v*_*.json", _FILE, "A-OKVQA")
    require(bool(found), path, "expected A-OKVQA files aokvqa_v1p0_<split>.json (train, val, test), here or one "
                               "folder down")
    return SplitLayout(path, tuple((s, found[s]) for s in ("train", "val", "test") if s in found))


def read_records(layout: SplitLayout, split: str | None) -> Iterator[EntryRecord | Reject]:
    for name, path in layout.chosen(split):
        yield from _file_records(layout.root, name, path)


def to_samples(record: EntryRecord) -> Iterator[Outcome]:
    q = record.entry
    question = normalised_question(q.question_id, q.question)
    answers = answer_counts(q.direct_answers)
    if not answers:
        raise RecordError(f"no direct answers for question {q.question_id}")
    correct = q.choices[q.correct_choice_idx] if _valid_index(q.correct_choice_idx, q.choices) else None
    answer = choose_answer(answers, blip_normalise(correct) if isinstance(correct, str) else "")
    file_name = f"{q.image_id:012d}.jpg"
    image = load_image(record.image_dir / file_name)
    key = make_key(f"a{q.question_id}")
    fields = {"question": question, "answer": answer, "answers": answers}
    meta = {"fields": fields, "image_id": q.image_id, "file_name": file_name, "choices": list(q.choices),
            "correct_choice_idx": q.correct_choice_idx, "rationales": list(q.rationales),
            "difficult_direct_answer": q.difficult}
    yield Sample(key=key, task="vqa", turns=render("vqa", fields, key=key, width=image.width, height=image.height),
                 source=record.source, split=record.split, image=image, meta=meta)


def _file_records(root: Path, split: str, path: Path) -> Iterator[EntryRecord | Reject]:
    require(top_level(path) == "array", path, "expected A-OKVQA: a JSON list of questions")
    questions, rejects = parse_entries(json_items(path, "item"), _parse_question, NAME, path.name, "question_id")
    yield from rejects
    questions.sort(key=lambda q: (q.image_id, q.question_id))
    image_dir = locate_images(root, (f"{q.image_id:012d}.jpg" for q in questions), fallback=root / f"{split}2017")
    for q in questions:
        yield EntryRecord(Source(NAME, q.question_id), q, split, image_dir)


def _parse_question(entry: Any) -> Question:
    question_id = entry.get("question_id") if isinstance(entry, dict) else None
    if not isinstance(question_id, str) or not question_id:
        raise ValueError(f"question_id {question_id!r} is not a non-empty string")
    return Question(question_id, integer(entry, "image_id"), string(entry, "question"),
                    _strings(entry.get("choices")), entry.get("correct_choice_idx"),
                    _strings(entry.get("direct_answers")), _strings(entry.get("rationales")),
                    entry.get("difficult_direct_answer"))


def _strings(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list) else ()


def _valid_index(index: Any, choices: tuple[Any, ...]) -> bool:
    return isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(choices)
