"""GRIT-20M (Kosmos-2's grounded image-text pairs) as img2dataset downloads it -> [grounding], [refer], [identify].

Why: MiniGPT-v2's stage 1 takes grounded captions and weak REC/REG pairs from GRIT-20M (spec
section 9.1), and no preprocessing for it was published; these are the rules we chose.

Input: GRIT's url list (``coyo_*_snappy.parquet``) fetched with img2dataset ``--output_format
webdataset --save_additional_columns '["id","noun_chunks","ref_exps","clip_similarity_vitb32",
"clip_similarity_vitl14"]'`` (the dataset card's command). Each sample's json then has caption,
url, id, width/height (the stored picture), original_width/original_height, and ``noun_chunks`` /
``ref_exps``: lists of ``[start, end, x_min, y_min, x_max, y_max, confidence]``, character offsets
into the caption and a box as fractions (0..1) of the picture.

Record = one url (Source id = its img2dataset key; a failed download is a "read" reject).
- A span below ``--min-confidence`` is dropped and counted (Repair ``grit span below
  min_confidence``). A malformed span, offsets outside the caption, or a box that is empty or
  outside 0..1 (beyond 1e-3, which is clamped) is a reject naming the span; the rest still builds.
  A record with no span left is rejected.
- Boxes are fractions, so the stored picture may be smaller than the original but not reshaped: an
  aspect ratio more than 1% off the original's (img2dataset's border/center_crop resize modes pad
  or crop) rejects the record.
- Pixel corners are ``x_min * W`` ... of the stored picture, rounded to 1e-6 px (which removes the
  product's float noise: 0.7 of 100 px is 70, not 70.00000000000001), then formatted like every
  pixel box, ``int(px / W * 100)``. That is ``int(x * 100)`` of the published fraction except
  where float noise sits on a whole percent, where the two can differ by one (0.29 of 100 px
  gives ``<28>``, as 29 / 100 * 100 is 28.999999999999996 in floats; MiniGPT-v2's own formula).
- ``<key>-grounding``: the caption as published (not normalised; the offsets index it) with every
  noun chunk as ``<p>phrase</p> {boxes}``. Chunks with the same span are one phrase with all their
  boxes, in the published order (GLIP gives a plural phrase one box per object). Of phrases that
  overlap, the one with the most confident box is kept (ties: the earlier, then the shorter) and
  the others are dropped and counted (Repair ``grit noun chunk overlapping a more confident one``).
- ``<key>-r<k>-refer`` and ``<key>-r<k>-identify`` per referring expression ``k`` (its index in
  ``ref_exps``): the expression ``caption[start:end]`` through ``blip_caption``, and its box.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets_builders.formats.schema import Image, Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, Repair, make_key
from datasets_builders.sources.img2dataset import (
    Layout,
    WebRecord,
    caption_text,
    load_meta,
    load_picture,
    locate_shards,
    read_web_records,
)
from datasets_builders.templates.render import render

NAME = "grit"
VERSION = "1"
OPTIONS = ("min_confidence",)
SPAN_FIELDS = ("noun_chunks", "ref_exps")
BELOW = "grit span below min_confidence"
OVERLAP = "grit noun chunk overlapping a more confident one"
ASPECT_TOLERANCE = 0.01  #: relative; img2dataset's keep_ratio truncates a side by under one pixel
BOX_SLACK = 1e-3  #: of the picture: detector boxes may overshoot an edge by float noise
_COLUMNS = '\'["id","noun_chunks","ref_exps","clip_similarity_vitb32","clip_similarity_vitl14"]\''


@dataclass(frozen=True)
class GritLayout:
    shards: Layout
    min_confidence: float


@dataclass(frozen=True)
class GritRecord:
    source: Source
    web: WebRecord
    min_confidence: float


@dataclass(frozen=True)
class Span:
    field: str  #: "noun_chunks" or "ref_exps"
    index: int  #: in that list
    start: int
    end: int
    box: tuple[float, float, float, float]  #: pixels of the stored picture, x0 y0 x1 y1
    confidence: float


def locate(path: Path, options: Options) -> GritLayout:
    listed = any(path.glob("coyo_*_snappy.parquet"))
    hint = "coyo_*_snappy.parquet is GRIT's url list: download its images with img2dataset first" if listed else ""
    return GritLayout(locate_shards(path, hint), options.min_confidence)


def read_records(layout: GritLayout, split: str | None) -> Iterator[GritRecord | Reject]:
    for record in read_web_records(layout.shards, NAME, split):
        yield record if isinstance(record, Reject) else GritRecord(record.source, record, layout.min_confidence)


def to_samples(record: GritRecord) -> Iterator[Outcome]:
    web, source = record.web, record.source
    meta = load_meta(web)
    caption = caption_text(web, meta)
    if not caption.strip():
        raise RecordError(f"{web.where} has no caption")
    width, height = _stored_size(meta, web.where)
    spans: dict[str, list[Span]] = {field: [] for field in SPAN_FIELDS}
    unusable: list[str] = []
    for field in SPAN_FIELDS:
        for i, raw in enumerate(_span_list(meta, field, web.where)):
            try:
                span = parse_span(raw, field, i, caption, width, height)
            except ValueError as e:
                unusable.append(str(e))
                yield Reject(source, "convert", f"{web.where}: {e}")
                continue
            if span.confidence < record.min_confidence:
                yield Repair(source, BELOW)
            else:
                spans[field].append(span)
    if not any(spans.values()):
        first = f"; {len(unusable)} unusable, the first: {unusable[0]}" if unusable else ""
        raise RecordError(f"{web.where}: no span at or above min_confidence {record.min_confidence:g}{first}")
    image = load_picture(web, (width, height))
    about = {"grit_id": meta.get("id"), "url": meta.get("url")}
    if spans["noun_chunks"]:
        groups, dropped = phrases(spans["noun_chunks"])
        yield from (Repair(source, OVERLAP) for _ in range(dropped))
        fields = {"caption": caption, "phrases": [
            {"start": g[0].start, "end": g[0].end, "boxes": [list(s.box) for s in g]} for g in groups]}
        confidence = [[s.confidence for s in g] for g in groups]
        extra = {**about, "confidence": confidence}
        yield _sample(make_key(web.key, "grounding"), "grounding", fields, record, image, extra)
    for span in spans["ref_exps"]:
        expression = blip_normalise(caption[span.start:span.end])
        if not expression:
            yield Reject(source, "convert", f"{web.where}: ref_exps[{span.index}] {caption[span.start:span.end]!r} "
                                            "is empty after normalisation")
            continue
        fields = {"expression": expression, "box": list(span.box)}
        extra = {**about, "confidence": span.confidence, "span": [span.start, span.end]}
        for task in ("refer", "identify"):
            yield _sample(make_key(web.key, f"r{span.index}", task), task, fields, record, image, extra)


def parse_span(raw: Any, field: str, index: int, caption: str, width: int, height: int) -> Span:
    """One published span with its box in pixels of a ``width`` x ``height`` picture; ValueError says why not."""
    name = f"{field}[{index}]"
    if not (isinstance(raw, list) and len(raw) == 7 and all(_finite(v) for v in raw)):
        raise ValueError(f"{name} {raw!r} is not [start, end, x_min, y_min, x_max, y_max, confidence]")
    start, end, x0, y0, x1, y1, confidence = raw
    if start != int(start) or end != int(end):
        raise ValueError(f"{name}: offsets {start:g}..{end:g} are not whole characters")
    if not 0 <= start < end <= len(caption):
        raise ValueError(f"{name}: characters {start:g}..{end:g} are empty or outside the "
                         f"{len(caption)}-character caption")
    shown = f"box [{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
    if min(x0, y0) < -BOX_SLACK or max(x1, y1) > 1 + BOX_SLACK:
        raise ValueError(f"{name}: {shown} lies outside 0..1")
    box = (_pixel(x0, width), _pixel(y0, height), _pixel(x1, width), _pixel(y1, height))
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"{name}: {shown} is empty")
    return Span(field, index, int(start), int(end), box, float(confidence))


def phrases(chunks: list[Span]) -> tuple[list[list[Span]], int]:
    """Noun chunks as phrases (same span: one phrase, several boxes) in caption order, overlaps
    resolved for the most confident; also how many chunks were dropped for overlapping."""
    groups: dict[tuple[int, int], list[Span]] = {}
    for span in chunks:
        groups.setdefault((span.start, span.end), []).append(span)
    ranked = sorted(groups.values(), key=lambda g: (-max(s.confidence for s in g), g[0].start, g[0].end))
    kept: list[list[Span]] = []
    dropped = 0
    for group in ranked:
        if any(group[0].start < k[0].end and k[0].start < group[0].end for k in kept):
            dropped += len(group)
        else:
            kept.append(group)
    return sorted(kept, key=lambda g: g[0].start), dropped


def _sample(key: str, task: str, fields: dict[str, Any], record: GritRecord, image: Image,
            extra: Mapping[str, Any]) -> Sample:
    return Sample(key=key, task=task, turns=render(task, fields, key=key, width=image.width, height=image.height),
                  source=record.source, split="train", image=image, meta={"fields": fields, **extra})


def _stored_size(meta: Mapping[str, Any], where: str) -> tuple[int, int]:
    """The stored picture's size; RecordError when the download changed its shape."""
    width, height, original_width, original_height = (
        _positive(meta, name, where) for name in ("width", "height", "original_width", "original_height"))
    if abs((width / height) / (original_width / original_height) - 1) > ASPECT_TOLERANCE:
        raise RecordError(f"{where}: stored {width}x{height} but the original is {original_width}x{original_height}: "
                          "aspect ratio changed by the download (resize_mode border/center_crop?); "
                          "normalised boxes would be wrong")
    return width, height


def _positive(meta: Mapping[str, Any], name: str, where: str) -> int:
    value = meta.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RecordError(f"{where}: json {name} {value!r} is not a positive integer")
    return value


def _span_list(meta: Mapping[str, Any], field: str, where: str) -> list:
    if not any(f in meta for f in SPAN_FIELDS):
        raise RecordError(f"{where}: json has no noun_chunks or ref_exps (download with --save_additional_columns "
                          f"{_COLUMNS})")
    value = meta.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"{where}: json {field} is a {type(value).__name__}, not a list of spans")
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pixel(fraction: float, size: int) -> float:
    return round(min(max(fraction, 0.0), 1.0) * size, 6)
