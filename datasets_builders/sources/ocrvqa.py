"""OCR-VQA as its download script leaves it -> [vqa].

``dataset.json`` is one JSON object: book id -> ``{imageURL, questions[], answers[], title,
authorName, genre, split}`` (split 1 train, 2 val, 3 test); ``images/`` holds each cover as the
id plus the extension of its ``imageURL`` (the download script's naming; a cover it could not
fetch is simply absent). Streamed as pairs: the file is ~200k books.

One record is one book, one sample per (question, answer) pair ``o<id>-<k>`` (MiniGPT-v2's
OCRVQADataset, minigptv2-data-spec.md 5, reads only split 1; every split is built here and a
plan picks it). Question and answer are processed (``blip_caption`` normalisation). A pair
whose question or answer is missing or empty is rejected on its own; a book whose lists differ
in length is rejected whole, since its pairs cannot be trusted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlparse

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, make_key, require
from datasets_builders.sources.images import load_image
from datasets_builders.sources.json_stream import json_pairs, top_level
from datasets_builders.templates.render import render

NAME = "ocrvqa"
VERSION = "1"
OPTIONS = ()
SPLITS = {1: "train", 2: "val", 3: "test"}


@dataclass(frozen=True)
class Layout:
    root: Path
    dataset: Path
    images: Path


class Book(NamedTuple):
    book_id: str
    file_name: str
    questions: tuple[Any, ...]
    answers: tuple[Any, ...]
    split: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class BookRecord:
    source: Source
    book: Book
    images: Path


def locate(path: Path, options: Options) -> Layout:
    candidates = [path / "dataset.json", *sorted(path.glob("*/dataset.json"))]
    dataset = next((p for p in candidates if p.is_file()), None)
    require(dataset is not None, path, "expected OCR-VQA's dataset.json (with the covers in images/), here or one "
                                       "folder down")
    return Layout(path, dataset, dataset.parent / "images")  # type: ignore[union-attr]


def read_records(layout: Layout, split: str | None) -> Iterator[BookRecord | Reject]:
    require(top_level(layout.dataset) == "map", layout.dataset, "expected OCR-VQA: a JSON object of book id -> entry")
    for index, (book_id, entry) in enumerate(json_pairs(layout.dataset)):
        try:
            book = _parse(book_id, entry)
        except ValueError as e:
            yield Reject(Source(NAME, book_id or f"dataset.json#{index}"), "read", f"dataset.json entry {index}: {e}")
            continue
        if split is None or book.split == split.lower():
            yield BookRecord(Source(NAME, book_id), book, layout.images)


def to_samples(record: BookRecord) -> Iterator[Outcome]:
    book = record.book
    if len(book.questions) != len(book.answers):
        raise RecordError(f"book {book.book_id} has {len(book.questions)} questions but {len(book.answers)} answers")
    image = load_image(record.images / book.file_name)
    for k, (raw_question, raw_answer) in enumerate(zip(book.questions, book.answers)):
        question = blip_normalise(raw_question) if isinstance(raw_question, str) else ""
        answer = blip_normalise(raw_answer) if isinstance(raw_answer, str) else ""
        if not question or not answer:
            yield Reject(record.source, "convert",  # a part of the record: the book's other pairs stay
                         f"book {book.book_id} pair {k}: the {'question' if not question else 'answer'} is empty")
            continue
        key = make_key(f"o{book.book_id}-{k}")
        fields = {"question": question, "answer": answer, "answers": {answer: 1}}
        yield Sample(key=key, task="vqa", turns=render("vqa", fields, key=key, width=image.width, height=image.height),
                     source=record.source, split=book.split, image=image,
                     meta={"fields": fields, "file_name": book.file_name, **book.meta})


def _parse(book_id: str, entry: Any) -> Book:
    if not isinstance(entry, dict):
        raise ValueError(f"is a {type(entry).__name__}, not an object")
    url, split = entry.get("imageURL"), entry.get("split")
    if not isinstance(url, str) or not url:
        raise ValueError("has no imageURL")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not 1, 2 or 3")
    if not book_id or "/" in book_id or book_id.startswith("."):
        raise ValueError(f"id {book_id!r} is not a file name stem")
    questions, answers = entry.get("questions"), entry.get("answers")
    if not isinstance(questions, list) or not isinstance(answers, list):
        raise ValueError("questions and answers must be lists")
    extension = PurePosixPath(urlparse(url).path).suffix or ".jpg"
    meta = {k: entry.get(k) for k in ("title", "authorName", "genre") if k in entry}
    return Book(book_id, book_id + extension, tuple(questions), tuple(answers), SPLITS[split], meta)
