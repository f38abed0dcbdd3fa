"""Visual Genome region descriptions as its site ships them -> [refer], [identify].

``image_data.json`` lists each image (``image_id``, or ``id`` in v1.0; ``url``, ``width``,
``height``), ``region_descriptions.json`` each image's regions (``{"id": image_id, "regions":
[{region_id, x, y, width, height, phrase}]}``); the photos are in ``VG_100K/`` and
``VG_100K_2/``, the folder named by the second-to-last segment of the image's URL (as MiniGPT-v2
finds them). Both files are streamed; only each image's size and file is kept in memory.

One record is one image (decoded once, however many regions it has); each region whose
width x height is under ``max_region_area`` (MiniGPT-v2's filter, "follow OFA practice": 16,384
px) gives a refer and an identify sample ``vg<region_id>-<task>``, the phrase processed as the
expression, the box in the 0..100 grid of the image's own size from ``image_data.json``.
Regions the filter drops are counted in one reject row per image (the filter is a choice, not
damage); a region whose box leaves the picture or whose phrase is empty is rejected on its own.
Visual Genome has no official split: everything is ``train``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlparse

from datasets_builders.formats.boxes import BoxError, PixelBox
from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.contract import Options, Outcome, RecordError, Reject, make_key, require
from datasets_builders.sources.images import load_image
from datasets_builders.sources.json_stream import json_items
from datasets_builders.sources.split_files import folders
from datasets_builders.templates.render import render

NAME = "visual-genome"
VERSION = "1"
OPTIONS = ("max_region_area",)
TASKS = ("refer", "identify")
SPLIT = "train"
FOLDERS = ("VG_100K", "VG_100K_2")


@dataclass(frozen=True)
class Layout:
    root: Path
    image_data: Path
    regions: Path
    max_region_area: int


class Picture(NamedTuple):
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class ImageRecord:
    source: Source
    image_id: int
    picture: Picture | str  #: the reason it is unusable, if it is
    regions: list[Any]
    max_region_area: int


def locate(path: Path, options: Options) -> Layout:
    found = {name: next((f / name for f in folders(path) if (f / name).is_file()), None)
             for name in ("image_data.json", "region_descriptions.json")}
    require(all(found.values()), path, "expected Visual Genome's image_data.json and region_descriptions.json "
                                       "(with the photos in VG_100K/ and VG_100K_2/), here or one folder down")
    return Layout(path, found["image_data.json"], found["region_descriptions.json"], options.max_region_area)  # type: ignore[arg-type]


def read_records(layout: Layout, split: str | None) -> Iterator[ImageRecord | Reject]:
    if split not in (None, SPLIT):
        return
    pictures = {}
    for entry in json_items(layout.image_data, "item"):
        image_id = entry.get("image_id", entry.get("id")) if isinstance(entry, dict) else None
        if isinstance(image_id, int) and not isinstance(image_id, bool):
            pictures[image_id] = _picture(layout.root, entry)
    for index, entry in enumerate(json_items(layout.regions, "item")):
        image_id = entry.get("id", entry.get("image_id")) if isinstance(entry, dict) else None
        if not isinstance(image_id, int) or isinstance(image_id, bool) or not isinstance(entry.get("regions"), list):
            yield Reject(Source(NAME, f"region_descriptions.json#{index}"), "read",
                         f"region_descriptions.json entry {index}: no integer id with a list of regions")
            continue
        picture = pictures.get(image_id, f"image {image_id} is not in image_data.json")
        yield ImageRecord(Source(NAME, str(image_id)), image_id, picture, entry["regions"], layout.max_region_area)


def to_samples(record: ImageRecord) -> Iterator[Outcome]:
    if isinstance(record.picture, str):
        raise RecordError(record.picture)
    if not record.regions:
        raise RecordError(f"image {record.image_id} has no region descriptions")
    width, height = record.picture.width, record.picture.height
    image = load_image(record.picture.path, (width, height))
    large = 0
    for index, region in enumerate(record.regions):
        where = f"image {record.image_id} region {index}"
        try:
            region_id, box, phrase = _region(region, width, height)
        except (BoxError, ValueError) as e:
            yield Reject(record.source, "convert", f"{where}: {e}")
            continue
        if (box.x1 - box.x0) * (box.y1 - box.y0) >= record.max_region_area:
            large += 1
            continue
        for task in TASKS:
            key = make_key(f"vg{region_id}", task)
            fields = {"expression": phrase, "box": box.xyxy()}
            meta = {"fields": fields, "image_id": record.image_id, "file_name": record.picture.path.name,
                    "region_id": region_id}
            yield Sample(key=key, task=task, turns=render(task, fields, key=key, width=width, height=height),
                         source=record.source, split=SPLIT, image=image, meta=meta)
    if large:
        yield Reject(record.source, "convert", f"image {record.image_id}: {large} regions of {record.max_region_area:,} "
                                               "px or more left out (MiniGPT-v2's area filter, --max-region-area)")


def _picture(root: Path, entry: dict) -> Picture | str:
    width, height, url = entry.get("width"), entry.get("height"), entry.get("url")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return f"image_data.json gives image {entry.get('image_id', entry.get('id'))} no positive width and height"
    parts = PurePosixPath(urlparse(url).path).parts if isinstance(url, str) else ()
    if len(parts) < 2 or parts[-2] not in FOLDERS or parts[-1].startswith("."):
        return f"image_data.json gives image {entry.get('image_id', entry.get('id'))} no VG_100K(_2) url ({url!r})"
    folder = root / parts[-2] if (root / parts[-2]).is_dir() else _find(root, parts[-2])
    return Picture(folder / parts[-1], width, height)


def _find(root: Path, folder: str) -> Path:
    return next((p / folder for p in sorted(root.iterdir()) if (p / folder).is_dir()), root / folder)


def _region(region: Any, width: int, height: int) -> tuple[int, PixelBox, str]:
    if not isinstance(region, dict):
        raise ValueError(f"is a {type(region).__name__}, not an object")
    region_id = region.get("region_id", region.get("id"))
    if not isinstance(region_id, int) or isinstance(region_id, bool):
        raise ValueError(f"region_id {region_id!r} is not an integer")
    phrase = blip_normalise(region["phrase"]) if isinstance(region.get("phrase"), str) else ""
    if not phrase:
        raise ValueError(f"region {region_id}: the phrase is empty after normalisation")
    try:
        box = PixelBox.from_xywh([region.get(k) for k in ("x", "y", "width", "height")])
    except (TypeError, ValueError):
        raise ValueError(f"region {region_id}: box {[region.get(k) for k in ('x', 'y', 'width', 'height')]} "
                         "is not four numbers") from None
    return region_id, box.check(width, height), phrase
