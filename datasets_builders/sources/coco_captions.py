"""COCO Captions as cocodataset.org ships them -> [caption].

``annotations/captions_<split><year>.json`` (``{images, annotations: [{id, image_id, caption}]}``)
with the photos in ``<split><year>/``. The 2017 files re-split the 2014 photos and captions under
the same ids, so when both years of a split are present only the newer is read (a warning names
the file left out); otherwise the same caption would come twice.

One record is one caption annotation, one sample ``c<annotation id>``; the caption goes through
MiniGPT-v2's ``blip_caption`` normalisation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.coco_images import (
    CocoImage,
    ImageTable,
    image_table,
    integer,
    locate_images,
    lookup_image,
    parse_entries,
    streamed_list,
    split_of,
    string,
)
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, make_key, require
from datasets_builders.sources.images import load_image
from datasets_builders.templates.render import render

NAME = "coco-captions"
VERSION = "1"
OPTIONS = ()
_FILE = re.compile(r"^captions_([a-z]+)(\d{4})\.json$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionFile:
    path: Path
    subtype: str  #: e.g. "train2014"; also the name of the image folder

    @property
    def split(self) -> str:
        return split_of(self.subtype)


@dataclass(frozen=True)
class Layout:
    root: Path
    files: tuple[CaptionFile, ...]


@dataclass(frozen=True)
class CaptionRecord:
    source: Source
    annotation_id: int
    image_id: int
    caption: str  #: raw
    file: CaptionFile
    images: ImageTable  #: shared by the records of one file
    image_dir: Path


def locate(path: Path, options: Options) -> Layout:
    newest: dict[str, tuple[int, Path]] = {}
    for folder in (path / "annotations", path):
        for p in sorted(folder.glob("captions_*.json")) if folder.is_dir() else ():
            if (m := _FILE.match(p.name)) is None:
                continue
            split, year = m.group(1), int(m.group(2))
            if split in newest and newest[split][0] != year:
                older = min(newest[split], (year, p))[1]
                log.warning("%s: left out; the %s captions of a newer year are read instead", older, split)
            if split not in newest or year > newest[split][0]:
                newest[split] = (year, p)
    require(bool(newest), path, "expected COCO captions annotations/captions_<split><year>.json "
                                "(e.g. captions_train2014.json) with the images in <split><year>/")
    files = (CaptionFile(p, f"{split}{year}") for split, (year, p) in sorted(newest.items()))
    return Layout(path, tuple(files))


def read_records(layout: Layout, split: str | None) -> Iterator[CaptionRecord | Reject]:
    for file in layout.files:
        if split is None or file.split == split.lower():
            yield from _file_records(layout.root, file)


def to_samples(record: CaptionRecord) -> Iterator[Outcome]:
    image = lookup_image(record.images, record.image_id, record.file.path.name)
    caption = blip_normalise(record.caption)
    if not caption:
        raise RecordError(f"caption {record.annotation_id} is empty after normalisation (raw {record.caption!r})")
    loaded = load_image(record.image_dir / image.file_name, (image.width, image.height))
    key = make_key(f"c{record.annotation_id}")
    fields = {"caption": caption}
    meta = {"fields": fields, "image_id": image.id, "file_name": image.file_name}
    turns = render("caption", fields, key=key, width=image.width, height=image.height)
    yield Sample(key=key, task="caption", turns=turns,
                 source=record.source, split=record.file.split, image=loaded, meta=meta)


class _Caption(NamedTuple):
    annotation_id: int
    image_id: int
    caption: str


def _parse_caption(ann: Any) -> _Caption:
    return _Caption(integer(ann, "id"), integer(ann, "image_id"), string(ann, "caption"))


def _file_records(root: Path, file: CaptionFile) -> Iterator[CaptionRecord | Reject]:
    images = image_table(streamed_list(file.path, "images", "COCO captions"))
    captions, rejects = parse_entries(streamed_list(file.path, "annotations", "COCO captions"),
                                      _parse_caption, NAME, file.path.name, "id")
    yield from rejects
    captions.sort(key=lambda c: (c.image_id, c.annotation_id))
    names = (image.file_name for c in captions if isinstance(image := images.get(c.image_id), CocoImage))
    image_dir = locate_images(root, names, fallback=root / file.subtype)
    for c in captions:
        yield CaptionRecord(Source(NAME, str(c.annotation_id)), c.annotation_id, c.image_id, c.caption,
                            file, images, image_dir)
