"""TextCaps as its authors ship it -> [caption].

``TextCaps_0.1_<split>.json`` (train, val, test) is ``{"data": [...]}``, one entry per caption:
``image_id`` (TextVQA's hex id), ``caption_id``, ``caption_str``, ``reference_strs`` (the image's
five captions), ``image_width``, ``image_height``; the test file has no captions. The photos are
TextVQA's: ``train_images/<image_id>.jpg`` for train and val, ``test_images/`` for test, found
wherever the first few are (MiniGPT-v2's README once linked Visual Genome's images here by
mistake, minigptv2-data-spec.md 10: TextVQA's are the right ones).

One record is one caption entry, one sample ``t<caption_id>``; the caption goes through
MiniGPT-v2's ``blip_caption`` normalisation, as its TextCapDataset does. The picture must have the
entry's size; the other references and the image classes are kept in the meta.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.coco_images import integer, locate_images, parse_entries, streamed_list, string
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, make_key, require
from datasets_builders.sources.images import load_image
from datasets_builders.sources.split_files import EntryRecord, SplitLayout, split_files
from datasets_builders.templates.render import render

NAME = "textcaps"
VERSION = "1"
OPTIONS = ()
_FILE = re.compile(r"^TextCaps_[0-9.]+_(train|val|test)\.json$")


class Caption(NamedTuple):
    caption_id: int
    image_id: str
    caption: Any  #: a string where captioned
    size: tuple[int, int] | None
    references: tuple[Any, ...]
    classes: tuple[Any, ...]


def locate(path: Path, options: Options) -> SplitLayout:
    found = split_files(path, "TextCaps_*.json", _FILE, "TextCaps")
    require(bool(found), path, "expected TextCaps files TextCaps_0.1_<split>.json (with TextVQA's train_images/), "
                               "here or one folder down")
    return SplitLayout(path, tuple((s, found[s]) for s in ("train", "val", "test") if s in found))


def read_records(layout: SplitLayout, split: str | None) -> Iterator[EntryRecord | Reject]:
    for name, path in layout.chosen(split):
        captions, rejects = parse_entries(streamed_list(path, "data", "TextCaps"), _parse, NAME, path.name,
                                          "caption_id")
        yield from rejects
        captions.sort(key=lambda c: (c.image_id, c.caption_id))
        fallback = layout.root / ("test_images" if name == "test" else "train_images")
        image_dir = locate_images(layout.root, (f"{c.image_id}.jpg" for c in captions), fallback=fallback)
        for c in captions:
            yield EntryRecord(Source(NAME, str(c.caption_id)), c, name, image_dir)


def to_samples(record: EntryRecord) -> Iterator[Outcome]:
    c: Caption = record.entry
    caption = blip_normalise(c.caption) if isinstance(c.caption, str) else ""
    if not caption:
        raise RecordError(f"caption {c.caption_id} has no caption_str (or it is empty after normalisation)")
    file_name = f"{c.image_id}.jpg"
    image = load_image(record.image_dir / file_name, c.size)
    key = make_key(f"t{c.caption_id}")
    fields = {"caption": caption}
    meta = {"fields": fields, "image_id": c.image_id, "file_name": file_name, "references": list(c.references),
            "image_classes": list(c.classes)}
    yield Sample(key=key, task="caption", turns=render("caption", fields, key=key, width=image.width,
                                                       height=image.height),
                 source=record.source, split=record.split, image=image, meta=meta)


def _parse(entry: Any) -> Caption:
    image_id = string(entry, "image_id")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", image_id):
        raise ValueError(f"image_id {image_id!r} is not a file name stem")
    width, height = entry.get("image_width"), entry.get("image_height")
    size = (width, height) if all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                  for v in (width, height)) else None
    return Caption(integer(entry, "caption_id"), image_id, entry.get("caption_str"), size,
                   _listed(entry.get("reference_strs")), _listed(entry.get("image_classes")))


def _listed(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list) else ()
