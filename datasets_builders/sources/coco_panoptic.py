"""COCO panoptic annotations -> CoLLaVO crayon samples (one per image).

Why: CoLLaVO's crayon prompt needs, per pixel, the class of the segment it belongs to and that
segment's instance number within its class (model-spec.md 1.3), and its crayon instructions need
the verbalised object list with boxes (1.6, 1.8). COCO panoptic has both, exactly: a PNG of
segment ids per image and a JSON ``segments_info`` with each segment's category, area and box.

Layout: any ``*.json`` in the input folder or one level down whose top level has ``annotations``
(with ``segments_info``) and ``categories`` is a panoptic file (COCO: ``annotations/
panoptic_val2017.json``; the panopticapi example: ``panoptic_examples.json``). Its PNGs are in the
sibling folder named after the JSON's stem; its images in whichever folder holds the first
``images`` entry. The split comes from the stem ("train", "val", "test"; none of them: train).

Record = one annotation (one image), in the file's order; Source id = its image_id. The JSON is
streamed (``json_stream``): memory stays flat whatever its size. The map math is
``formats.crayon``; this module only finds the files and checks that PNG, JSON and image agree
(any disagreement rejects the image, with the reason). Instances past ``max_instances`` of one
class keep the maximum number in the map but are left out of the text lists (the model cannot
name a "#21 person"); each one is counted as a ``numbering clamped to N`` repair.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from datasets_builders.formats.crayon import Categories, CrayonError, CrayonMap, crayon_map, decode_ids
from datasets_builders.formats.schema import Sample, Source
from datasets_builders.sources.contract import (
    InputFormatError,
    Options,
    RecordError,
    Reject,
    Repair,
    make_key,
    require,
)
from datasets_builders.sources.images import decode_file, find_image_dir, load_image
from datasets_builders.sources.json_stream import json_events, json_items
from datasets_builders.templates.render import render

NAME = "coco-panoptic"
VERSION = "2"  #: 2: records in the file's order, streamed (1 sorted them by image_id, the whole file in memory)
OPTIONS = ("max_instances",)
_MARKER = b'"segments_info"'
_CHUNK = 1 << 20
_IMAGE_FIELDS = ("file_name", "width", "height")  #: what a record needs of its ``images`` entry


@dataclass(frozen=True)
class PanopticFile:
    json_path: Path
    png_dir: Path
    image_dir: Path | None  #: None when the file lists no images
    split: str


@dataclass(frozen=True)
class Layout:
    files: tuple[PanopticFile, ...]
    max_instances: int


@dataclass(frozen=True)
class _FileContext:
    """What every record of one panoptic JSON shares."""

    file: PanopticFile
    categories: Categories
    max_instances: int


@dataclass(frozen=True)
class PanopticRecord:
    source: Source
    annotation: Mapping[str, Any]
    image: Mapping[str, Any] | None  #: the ``images`` entry of the annotation's image_id
    context: _FileContext


def locate(path: Path, options: Options) -> Layout:
    files = tuple(_panoptic_file(p, path) for p in _candidates(path) if _is_panoptic(p))
    require(bool(files), path, "expected a COCO panoptic JSON (top-level 'annotations' with 'segments_info', "
            "and 'categories') in this folder or one level down")
    return Layout(files, options.max_instances)


def read_records(layout: Layout, split: str | None) -> Iterator[PanopticRecord | Reject]:
    for file in layout.files:
        if split is None or file.split == split:
            yield from _file_records(file, layout.max_instances)


def to_samples(record: PanopticRecord) -> Iterator[Sample | Reject | Repair]:
    ctx, ann, source = record.context, record.annotation, record.source
    if record.image is None:
        raise RecordError(f"{ctx.file.json_path.name}: image_id {source.id} has no entry in 'images'")
    width, height = int(record.image["width"]), int(record.image["height"])
    png_name = str(ann.get("file_name") or "") or Path(str(record.image["file_name"])).with_suffix(".png").name
    ids = _read_ids(ctx.file.png_dir / png_name, (width, height))
    try:
        crayon = crayon_map(ids, ann.get("segments_info", []), ctx.categories, ctx.max_instances)
    except CrayonError as e:
        raise RecordError(f"{png_name}: {e}") from None
    if ctx.file.image_dir is None:  # the JSON changed since locate: it had no images then
        raise RecordError(f"{ctx.file.json_path.name} listed no images when the build started", "image")
    image = load_image(ctx.file.image_dir / str(record.image["file_name"]), expect_size=(width, height))
    key = make_key(source.id)
    listed, clamped = _text_segments(crayon, ctx.max_instances)
    fields = {"segments": listed, "select_class": _select_class(listed, key)}
    yield Sample(
        key=key,
        task="crayon",
        turns=render("crayon", fields, key=key, width=width, height=height),
        source=source,
        split=ctx.file.split,
        image=image,
        extras={"crayon.png": crayon.png()},
        meta={"fields": fields, "image_id": ann["image_id"], "file_name": str(record.image["file_name"]),
              "segments": [s.to_json() for s in crayon.segments], "max_instances": ctx.max_instances},
    )
    for _ in range(clamped):
        yield Repair(source, f"numbering clamped to {ctx.max_instances}")


def split_of(stem: str) -> str:
    """The split a panoptic JSON holds, from its file stem."""
    for split in ("train", "val", "test"):
        if split in stem.lower():
            return split
    return "train"


def _candidates(root: Path) -> list[Path]:
    return sorted([*root.glob("*.json"), *root.glob("*/*.json")])


def _is_panoptic(path: Path) -> bool:
    """Whether the JSON is a panoptic file: a top-level object with a ``categories`` list and an
    ``annotations`` list whose first entry has ``segments_info``. A cheap byte scan comes first
    (COCO's instances JSONs are large and may sit in the same folder), then a streamed walk that
    stops as soon as the answer is known."""
    if not _mentions(path, _MARKER):
        return False
    categories = segments = False
    first_annotation = None  # None: not reached; True: inside it; False: past it
    for n, (prefix, event, value) in enumerate(json_events(path)):
        if n == 0 and event != "start_map":
            return False  # the top level is not an object
        if prefix == "categories" and event == "start_array":
            categories = True
        elif prefix == "annotations.item" and first_annotation is None:
            if event != "start_map":
                return False
            first_annotation = True
        elif first_annotation and prefix == "annotations.item":
            if event == "map_key" and value == "segments_info":
                segments = True
            elif event == "end_map":
                first_annotation = False
                if not segments:
                    return False
        if categories and segments:
            return True
    return False


def _mentions(path: Path, needle: bytes) -> bool:
    tail = b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle):]
    except OSError as e:
        raise InputFormatError(f"{path}: cannot read ({e})") from None
    return False


def _panoptic_file(json_path: Path, root: Path) -> PanopticFile:
    png_dir = json_path.with_suffix("")
    require(png_dir.is_dir(), json_path, f"expected its panoptic PNG folder {png_dir.name}/ next to it")
    first_image = next(json_items(json_path, "images.item"), None)
    image_dir = None
    if first_image is not None:
        first = str(first_image.get("file_name", "")) if isinstance(first_image, dict) else ""
        require(bool(first), json_path, "expected images[0] to have a file_name")
        image_dir = find_image_dir(root, first)
        require(image_dir != png_dir, image_dir, f"expected the images of {json_path.name}, found only its PNG folder")
    return PanopticFile(json_path, png_dir, image_dir, split_of(json_path.stem))


def _file_records(file: PanopticFile, max_instances: int) -> Iterator[PanopticRecord | Reject]:
    """The annotations in file order, streamed: a pass for the categories, one for the images
    (only what a record needs of each), one yielding the annotations."""
    path, name = file.json_path, file.json_path.name
    listed = list(json_items(path, "categories.item"))
    try:
        categories = Categories.from_coco(listed)
    except (CrayonError, KeyError, TypeError, ValueError) as e:
        raise InputFormatError(f"{path}: unusable 'categories' ({type(e).__name__}: {e})") from None
    context = _FileContext(file, categories, max_instances)
    images = {img["id"]: {k: img[k] for k in _IMAGE_FIELDS if k in img}
              for img in json_items(path, "images.item") if isinstance(img, dict) and "id" in img}
    for i, ann in enumerate(json_items(path, "annotations.item")):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), (int, str)):
            yield Reject(Source(NAME, f"annotations[{i}]"), "read", f"{name}: annotations[{i}] has no image_id")
        else:
            yield PanopticRecord(Source(NAME, str(ann["image_id"])), ann, images.get(ann["image_id"]), context)


def _read_ids(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The segment-id map of one panoptic PNG; RecordError(stage "image") when it cannot serve."""
    _, picture = decode_file(path, "panoptic PNG")
    if picture.format != "PNG" or picture.mode not in ("RGB", "RGBA"):
        raise RecordError(f"panoptic PNG {path} is {picture.format} mode {picture.mode}; expected an RGB PNG", "image")
    pixels = np.asarray(picture)
    if (pixels.shape[1], pixels.shape[0]) != size:
        raise RecordError(f"panoptic PNG {path} is {pixels.shape[1]}x{pixels.shape[0]} but the image is "
                          f"{size[0]}x{size[1]}", "image")
    return decode_ids(pixels)


def _text_segments(crayon: CrayonMap, max_instances: int) -> tuple[list[dict[str, Any]], int]:
    """The segments the text may name (instances within the clamp), and how many were clamped."""
    seen: dict[int, int] = {}
    listed, clamped = [], 0
    for seg in crayon.segments:
        seen[seg.category_id] = seen.get(seg.category_id, 0) + 1
        if seen[seg.category_id] > max_instances:
            clamped += 1
        else:
            listed.append(seg.to_json())
    return listed, clamped


def _select_class(segments: list[dict[str, Any]], key: str) -> str | None:
    """One class present, chosen from the key (reproducible, spread evenly over the classes)."""
    classes = sorted({s["class"] for s in segments})
    return classes[xxhash.xxh3_64_intdigest(key.encode()) % len(classes)] if classes else None
