"""What the COCO-derived formats (RefCOCO, VQA v2, COCO captions) share: image tables and folders.

COCO JSON lists its images as ``{id, file_name, width, height}``; annotations point at them by id.
A table maps each id to the image, or to the reason its entry is unusable, so a record that points
at a bad or absent entry is rejected with that reason instead of a bare "not found". Entries of
the raw lists are parsed one at a time: a malformed one becomes a "read" reject naming the file
and its position, and the rest of the file still builds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from datasets_builders.formats.schema import Source
from datasets_builders.sources.contract import InputFormatError, RecordError, Reject, require
from datasets_builders.sources.images import find_image_dir
from datasets_builders.sources.json_stream import json_events, json_items

R = TypeVar("R")
MAX_PROBES = 8  # image names tried when looking for the image folder; one missing photo must not hide it
ImageTable = Mapping[int, "CocoImage | str"]


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int


def integer(entry: Any, name: str) -> int:
    """``entry[name]`` as an int; ValueError with a readable reason otherwise (bools are not ints)."""
    value = field(entry, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} {value!r} is not an integer")
    return value


def string(entry: Any, name: str) -> str:
    value = field(entry, name)
    if not isinstance(value, str):
        raise ValueError(f"{name} {value!r} is not a string")
    return value


def field(entry: Any, name: str) -> Any:
    if not isinstance(entry, dict):
        raise ValueError(f"is a {type(entry).__name__}, not an object")
    if name not in entry:
        raise ValueError(f"has no {name}")
    return entry[name]


def json_list(doc: Any, key: str, path: Path, what: str) -> list:
    """``doc[key]`` of a top-level JSON object; anything else means the file is not the format."""
    require(isinstance(doc, dict) and isinstance(doc.get(key), list), path,
            f"expected {what}: a JSON object with a list {key!r}")
    return doc[key]


def streamed_list(path: Path, key: str, what: str) -> Iterator[Any]:
    """``json_list`` without the file in memory: the entries of the top-level list ``key``, one at a
    time. The file's shape is checked first (a walk that stops at the list), so a file that is not
    the format fails before its first entry is used."""
    for n, (prefix, event, _) in enumerate(json_events(path)):
        if n == 0 and event != "start_map":
            break
        if prefix == key and event == "start_array":
            return json_items(path, f"{key}.item")
        if prefix == "" and event == "end_map":
            break
    raise InputFormatError(f"{path}: expected {what}: a JSON object with a list {key!r}")


def parse_entries(items: Iterable[Any], parse: Callable[[Any], R], dataset: str, where: str, id_field: str,
                  keep: Callable[[Any], bool] = lambda item: True) -> tuple[list[R], list[Reject]]:
    """Each item that ``keep`` lets through parsed, or a read Reject "<where> entry <i>: <why>" whose
    source id is the item's ``id_field`` when it has one, else ``<where>#<i>``."""
    parsed, rejects = [], []
    for i, item in enumerate(items):
        if not keep(item):
            continue
        try:
            parsed.append(parse(item))
        except ValueError as e:
            raw_id = item.get(id_field) if isinstance(item, dict) else None
            source = Source(dataset, str(raw_id) if isinstance(raw_id, (int, str)) else f"{where}#{i}")
            rejects.append(Reject(source, "read", f"{where} entry {i}: {e}"))
    return parsed, rejects


def image_table(images: Iterable[Any]) -> dict[int, CocoImage | str]:
    """COCO ``images`` by id; an entry with an id but bad fields maps to the reason it is unusable."""
    table: dict[int, CocoImage | str] = {}
    for entry in images:
        try:
            image_id = integer(entry, "id")
        except ValueError:
            continue  # nothing can point at an entry without an id
        try:
            width, height = integer(entry, "width"), integer(entry, "height")
            if width <= 0 or height <= 0:
                raise ValueError(f"size {width}x{height} is not positive")
            table[image_id] = CocoImage(image_id, string(entry, "file_name"), width, height)
        except ValueError as e:
            table[image_id] = str(e)
    return table


def lookup_image(table: ImageTable, image_id: int, where: str) -> CocoImage:
    """The image entry, or RecordError saying it is absent from (or unusable in) ``where``."""
    entry = table.get(image_id)
    if entry is None:
        raise RecordError(f"image {image_id} is not in {where}")
    if isinstance(entry, str):
        raise RecordError(f"image {image_id} in {where} is unusable: {entry}")
    return entry


def locate_images(root: Path, file_names: Iterable[str], fallback: Path) -> Path:
    """The folder holding the images: the first of a few named files that exists shows where it is.
    If none is found, ``fallback``: every record is then rejected as a missing image file, by path."""
    for name in islice(dict.fromkeys(file_names), MAX_PROBES):
        try:
            return find_image_dir(root, name)
        except InputFormatError:
            continue
    return fallback


def split_of(subtype: str) -> str:
    """COCO's subtype names carry the year: ``train2014`` -> ``train``, ``test-dev2015`` -> ``test-dev``."""
    return re.sub(r"\d+", "", subtype).lower()
