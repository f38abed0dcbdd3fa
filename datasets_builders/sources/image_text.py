"""Captioned web images (LAION, CC3M, SBU, ...) as img2dataset downloads them -> [caption].

MiniGPT-v2's stage 1 trains on these weakly labelled pairs (spec section 9.1). The layout is
img2dataset's WebDataset output (see :mod:`datasets_builders.sources.img2dataset`); one record is
one url of the download, Source id its img2dataset key. A downloaded url gives one ``caption``
sample keyed by that key, its caption (``<key>.txt``, else the json's ``caption``) through
MiniGPT-v2's ``blip_caption`` normalisation; a failed url is a "read" reject with img2dataset's
error. There are no splits: every sample is "train".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from datasets_builders.formats.schema import Sample
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, make_key
from datasets_builders.sources.img2dataset import (
    Layout,
    WebRecord,
    caption_text,
    declared_size,
    load_meta,
    load_picture,
    locate_shards,
    read_web_records,
)
from datasets_builders.templates.render import render

NAME = "image-text"
VERSION = "1"
OPTIONS = ()


def locate(path: Path, options: Options) -> Layout:
    return locate_shards(path)


def read_records(layout: Layout, split: str | None) -> Iterator[WebRecord | Reject]:
    return read_web_records(layout, NAME, split)


def to_samples(record: WebRecord) -> Iterator[Outcome]:
    meta = load_meta(record)
    raw = caption_text(record, meta)
    caption = blip_normalise(raw)
    if not caption:
        raise RecordError(f"{record.where}: caption is empty after normalisation (raw {raw!r})")
    image = load_picture(record, declared_size(meta))
    key = make_key(record.key)
    fields = {"caption": caption}
    turns = render("caption", fields, key=key, width=image.width, height=image.height)
    yield Sample(key=key, task="caption", turns=turns, source=record.source, split="train", image=image,
                 meta={"fields": fields, "url": meta.get("url")})

