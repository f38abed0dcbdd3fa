"""VQA v2 as visualqa.org ships it -> [vqa].

Per COCO subtype (``train2014``, ``val2014``, ``test2015``, ``test-dev2015``) there is a questions
file ``v2_OpenEnded_mscoco_<subtype>_questions.json`` and, except for the test sets, an annotations
file ``v2_mscoco_<subtype>_annotations.json`` with ten annotators' answers per question; both may
sit in the input folder or one folder below it. Images are ``<subtype>/COCO_<subtype>_<id:012d>.jpg``
(test-dev questions use the test2015 photos). The split is the subtype without its year.

One record is one question, one sample ``q<question_id>``. The answer is the most frequent of the
ten answers after normalisation; a tie goes to the (normalised) ``multiple_choice_answer`` if it is
among the tied, else to the alphabetically first. All normalised answers and their counts go into
``fields["answers"]``, so training can draw one weighted by frequency as MiniGPT-v2 does.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.coco_images import (
    integer,
    locate_images,
    parse_entries,
    split_of,
    streamed_list,
    string,
)
from datasets_builders.sources.contract import (
    Options,
    Outcome,
    RecordError,
    Reject,
    make_key,
    require,
)
from datasets_builders.sources.images import load_image
from datasets_builders.sources.split_files import folders, split_files
from datasets_builders.templates.render import render

NAME = "vqa"
VERSION = "1"  #: streaming (2026-12-08) changed no output: same records, same order
OPTIONS = ()


@dataclass(frozen=True)
class Naming:
    """A publisher's names for VQA-shaped files (VQA v2's here, OK-VQA's in ``okvqa``)."""

    dataset: str  #: the builder, and the dataset its records' sources name
    questions: re.Pattern[str]  #: a questions file's name; group 1 is the COCO subtype
    annotations: str  #: the annotations file of a subtype: ``str.format(subtype)``
    expected: str  #: what ``locate`` says it looked for


VQA_V2 = Naming(NAME, re.compile(r"^v2_OpenEnded_mscoco_(.+)_questions\.json$"), "v2_mscoco_{}_annotations.json",
                "expected VQA v2 files v2_OpenEnded_mscoco_<subtype>_questions.json "
                "(with v2_mscoco_<subtype>_annotations.json), here or one folder down")


@dataclass(frozen=True)
class Subtype:
    name: str  #: e.g. "train2014"
    questions: Path
    annotations: Path | None  #: None for the test sets

    @property
    def split(self) -> str:
        return split_of(self.name)

    @property
    def image_subtype(self) -> str:
        return re.sub(r"^test-dev", "test", self.name)

    def file_name(self, image_id: int) -> str:
        return f"COCO_{self.image_subtype}_{image_id:012d}.jpg"


@dataclass(frozen=True)
class Layout:
    root: Path
    subtypes: tuple[Subtype, ...]
    naming: Naming = VQA_V2


@dataclass(frozen=True)
class QuestionRecord:
    source: Source
    question_id: int
    image_id: int
    question: str  #: raw
    annotation: Answers | None  #: None: the question has no answers
    subtype: Subtype
    image_dir: Path


def locate(path: Path, options: Options) -> Layout:
    return locate_files(path, VQA_V2)


def locate_files(path: Path, naming: Naming) -> Layout:
    """The questions files ``naming`` matches in ``path`` or one folder down, each with its
    subtype's annotations file where there is one (the test sets have none)."""
    found = split_files(path, "*_questions.json", naming.questions, "questions")
    require(bool(found), path, naming.expected)
    subtypes = []
    for name, questions in sorted(found.items()):
        answers = [f / naming.annotations.format(name) for f in (questions.parent, *folders(path))]
        subtypes.append(Subtype(name, questions, next((a for a in answers if a.is_file()), None)))
    return Layout(path, tuple(subtypes), naming)


def read_records(layout: Layout, split: str | None) -> Iterator[QuestionRecord | Reject]:
    for subtype in layout.subtypes:
        if split is None or subtype.split == split.lower():
            yield from _subtype_records(layout.root, subtype, layout.naming.dataset)


def to_samples(record: QuestionRecord) -> Iterator[Outcome]:
    qid, ann = record.question_id, record.annotation
    if ann is None:
        file = record.subtype.annotations
        where = file.name if file is not None else f"{record.subtype.name} (no annotations file)"
        raise RecordError(f"no answers for question {qid} in {where}")
    question = normalised_question(qid, record.question)
    answers = answer_counts(ann.answers)
    preferred = ann.multiple_choice_answer
    answer = choose_answer(answers, blip_normalise(preferred) if isinstance(preferred, str) else "")
    if not answer:
        raise RecordError(f"question {qid} has no answer that is non-empty after normalisation")
    file_name = record.subtype.file_name(record.image_id)
    image = load_image(record.image_dir / file_name)
    key = make_key(f"q{qid}")
    fields = {"question": question, "answer": answer, "answers": answers}
    meta = {"fields": fields, "image_id": record.image_id, "file_name": file_name,
            "question_type": ann.question_type, "answer_type": ann.answer_type}
    yield Sample(key=key, task="vqa", turns=render("vqa", fields, key=key, width=image.width, height=image.height),
                 source=record.source, split=record.subtype.split, image=image, meta=meta)


def choose_answer(counts: Mapping[str, int], preferred: str) -> str:
    """The most frequent answer; ties: ``preferred`` if tied, else alphabetical. No counts: ``preferred``."""
    if not counts:
        return preferred
    top = max(counts.values())
    tied = sorted(a for a, n in counts.items() if n == top)
    return preferred if preferred in tied else tied[0]


def normalised_question(question_id: object, text: str) -> str:
    """The question through MiniGPT-v2's normalisation; RecordError when nothing is left of it."""
    question = blip_normalise(text)
    if not question:
        raise RecordError(f"question {question_id} is empty after normalisation")
    return question


def answer_counts(texts: tuple[Any, ...]) -> dict[str, int]:
    """Normalised answer -> how many annotators gave it, most frequent first (empty ones dropped)."""
    counts = Counter(n for t in texts if isinstance(t, str) and (n := blip_normalise(t)))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class _Question(NamedTuple):
    question_id: int
    image_id: int
    question: str


def _parse_question(q: Any) -> _Question:
    return _Question(integer(q, "question_id"), integer(q, "image_id"), string(q, "question"))


class Answers(NamedTuple):
    """What a sample needs of one VQA annotation, its strings interned: VQA v2 train has 443k
    questions with ten answers each, mostly the same few thousand words, so this keeps all of
    them in about 150 MB where the parsed JSON took several GB."""

    answers: tuple[Any, ...]  #: each annotator's raw ``answer`` (None where an entry had none)
    multiple_choice_answer: Any
    question_type: Any
    answer_type: Any

    @classmethod
    def of(cls, ann: Mapping[str, Any]) -> Answers:
        raw = ann.get("answers")
        texts = tuple(interned(a.get("answer")) for a in raw if isinstance(a, dict)) if isinstance(raw, list) else ()
        return cls(texts, interned(ann.get("multiple_choice_answer")), interned(ann.get("question_type")),
                   interned(ann.get("answer_type")))


def interned(value: Any) -> Any:
    """A string kept once in memory however many records repeat it (answers, question types)."""
    return sys.intern(value) if isinstance(value, str) else value


def _subtype_records(root: Path, subtype: Subtype, dataset: str) -> Iterator[QuestionRecord | Reject]:
    """Both files streamed (``json_stream``); the questions are kept small and sorted by image, the
    annotations as :class:`Answers`."""
    questions, rejects = parse_entries(streamed_list(subtype.questions, "questions", "VQA questions"),
                                       _parse_question, dataset, subtype.questions.name, "question_id")
    yield from rejects
    answered: dict[int, Answers] = {}
    if subtype.annotations is not None:
        for ann in streamed_list(subtype.annotations, "annotations", "VQA annotations"):
            if isinstance(ann, dict) and isinstance(ann.get("question_id"), int):
                answered.setdefault(ann["question_id"], Answers.of(ann))
    questions.sort(key=lambda q: (q.image_id, q.question_id))
    image_dir = root / subtype.image_subtype
    if answered:  # unanswered questions are rejected before their image is looked at
        names = (subtype.file_name(q.image_id) for q in questions if q.question_id in answered)
        image_dir = locate_images(root, names, fallback=image_dir)
    for q in questions:
        yield QuestionRecord(Source(dataset, str(q.question_id)), q.question_id, q.image_id, q.question,
                             answered.get(q.question_id), subtype, image_dir)
