"""Panoptic id map -> CoLLaVO crayon map: semantic and numbering index per pixel, vectorised.

A COCO panoptic PNG stores a segment id per pixel as R + 256*G + 256^2*B (0 = unlabelled). The
crayon map keeps two 8-bit indices per pixel at full resolution (lossless, no resize):

- semantic  = 1 + the category's position among the dataset's categories sorted by id (0 = none);
- numbering = 1-based instance number within its class, counting segments in increasing segment
  id, clamped to ``max_instances`` (CoLLaVO assumes at most 20; extra instances are counted).

Stored as ``crayon.png``: an RGB PNG with R = semantic, G = numbering, B = 0. Each segment's area
and box are measured on the PNG and must equal the JSON's exactly, or the record is refused.

Cost: the id map is cut into row-wise runs of equal ids (one comparison pass); areas, boxes and
the painted maps come from the runs, which are far fewer than the pixels. Nothing loops over
pixels per segment.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

MAX_INSTANCES = 20
_NAME_SUFFIX = re.compile(r"(-merged|-other|-stuff)+$")


class CrayonError(ValueError):
    """The PNG and its segments_info disagree, or a category is unknown; names the segment."""


@dataclass(frozen=True)
class Categories:
    """A dataset's categories in the crayon order: sorted by id, semantic index = position + 1."""

    ids: tuple[int, ...]
    names: tuple[str, ...]  #: text names: COCO's -merged/-other/-stuff suffixes stripped
    isthing: tuple[bool, ...]

    @classmethod
    def from_coco(cls, categories: Sequence[Mapping[str, Any]]) -> Categories:
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        ids = tuple(int(c["id"]) for c in ordered)
        if len(set(ids)) != len(ids):
            raise CrayonError("categories list the same id twice")
        if len(ids) > 254:
            raise CrayonError(f"{len(ids)} categories do not fit an 8-bit semantic index")
        return cls(ids, tuple(text_name(str(c["name"])) for c in ordered), tuple(bool(c.get("isthing", 0)) for c in ordered))

    def semantic(self, category_id: int) -> int:
        try:
            return self.ids.index(category_id) + 1
        except ValueError:
            raise CrayonError(f"category id {category_id} is not among the dataset's categories") from None


@dataclass(frozen=True)
class Segment:
    id: int  #: panoptic segment id (R + 256 G + 256^2 B)
    category_id: int
    name: str  #: class text, e.g. "person", "sky"
    semantic: int
    number: int  #: after clamping
    bbox: tuple[int, int, int, int]  #: x, y, w, h in pixels, measured on the PNG
    area: int
    iscrowd: bool
    isthing: bool

    def to_json(self) -> dict[str, Any]:
        x, y, w, h = self.bbox
        return {"id": self.id, "category_id": self.category_id, "class": self.name, "semantic": self.semantic,
                "number": self.number, "box": [x, y, x + w, y + h], "area": self.area,
                "iscrowd": self.iscrowd, "isthing": self.isthing}


@dataclass(frozen=True)
class CrayonMap:
    semantic: np.ndarray  #: (H, W) uint8
    numbering: np.ndarray  #: (H, W) uint8
    segments: tuple[Segment, ...]  #: in increasing segment id
    clamped: int  #: instances whose number was clamped to the maximum

    def png(self) -> bytes:
        """The ``crayon.png`` member: R = semantic, G = numbering, B = 0 (lossless)."""
        rgb = np.zeros((*self.semantic.shape, 3), np.uint8)
        rgb[..., 0], rgb[..., 1] = self.semantic, self.numbering
        out = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(out, "PNG", compress_level=1)
        return out.getvalue()


def text_name(name: str) -> str:
    """COCO panoptic names as words: "sky-other-merged" -> "sky", "wall-other-merged" -> "wall"."""
    return _NAME_SUFFIX.sub("", name).replace("-", " ")


def decode_ids(png: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 panoptic PNG pixels -> (H, W) uint32 segment ids."""
    if png.ndim != 3 or png.shape[2] < 3:
        raise CrayonError(f"panoptic PNG must be RGB, got an array of shape {png.shape}")
    rgb = png[..., :3].astype(np.uint32)
    return rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16)


def read_crayon(png: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, numbering) from a ``crayon.png`` member, for loaders and tests."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return pixels[..., 0].copy(), pixels[..., 1].copy()


def crayon_map(ids: np.ndarray, segments_info: Sequence[Mapping[str, Any]], categories: Categories,
               max_instances: int = MAX_INSTANCES) -> CrayonMap:
    """The crayon map of one panoptic annotation; raises CrayonError when PNG and JSON disagree."""
    info = sorted(segments_info, key=lambda s: int(s["id"]))
    seg_ids = np.array([0] + [int(s["id"]) for s in info], dtype=np.uint32)  # label 0 = unlabelled
    if len(np.unique(seg_ids)) != len(seg_ids):
        raise CrayonError("segments_info lists a segment id twice (or lists id 0)")
    runs = _Runs.of(ids)
    labels = _labels(runs.values, seg_ids)
    n = len(seg_ids)
    area, x0, y0, x1, y1 = _geometry(runs, labels, n)

    semantic_lut = np.zeros(n, np.uint8)
    numbering_lut = np.zeros(n, np.uint8)
    seen: dict[int, int] = {}
    segments, clamped = [], 0
    for label, s in enumerate(info, start=1):
        category = int(s["category_id"])
        semantic = categories.semantic(category)
        seen[category] = seen.get(category, 0) + 1
        number = min(seen[category], max_instances)
        clamped += seen[category] > max_instances
        bbox = (int(x0[label]), int(y0[label]), int(x1[label] - x0[label] + 1), int(y1[label] - y0[label] + 1))
        _check_geometry(s, int(area[label]), bbox)
        semantic_lut[label], numbering_lut[label] = semantic, number
        segments.append(Segment(int(s["id"]), category, categories.names[semantic - 1], semantic, number, bbox,
                                int(area[label]), bool(s.get("iscrowd", 0)), categories.isthing[semantic - 1]))
    return CrayonMap(runs.paint(semantic_lut[labels]), runs.paint(numbering_lut[labels]), tuple(segments), clamped)


def measure(ids: np.ndarray) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
    """Every segment id present in an id map (0 included) -> (area, (x, y, w, h)): what a COCO
    panoptic ``segments_info`` entry records, for writers of panoptic files."""
    runs = _Runs.of(ids)
    present = np.unique(runs.values)
    area, x0, y0, x1, y1 = _geometry(runs, np.searchsorted(present, runs.values), len(present))
    return {int(v): (int(area[i]), (int(x0[i]), int(y0[i]), int(x1[i] - x0[i] + 1), int(y1[i] - y0[i] + 1)))
            for i, v in enumerate(present)}


def encode_ids(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids < 2^24 -> (H, W, 3) uint8 panoptic PNG pixels (the inverse of decode_ids)."""
    ids = ids.astype(np.uint32)
    if ids.size and int(ids.max()) >= 1 << 24:
        raise CrayonError("segment ids must be below 2^24 to fit an RGB PNG")
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def _geometry(runs: _Runs, labels: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Area and inclusive box corners of each label 0..n-1, from the runs (zeros where absent)."""
    area = np.bincount(labels, weights=runs.lengths, minlength=n).astype(np.int64)
    order = np.argsort(labels, kind="stable")  # runs grouped by label, raster order kept inside
    present, first = np.unique(labels[order], return_index=True)
    x0, y0, x1, y1 = (np.zeros(n, np.int64) for _ in range(4))
    x0[present] = np.minimum.reduceat(runs.x0[order], first)
    x1[present] = np.maximum.reduceat(runs.x1[order], first)
    y0[present] = np.minimum.reduceat(runs.rows[order], first)
    y1[present] = np.maximum.reduceat(runs.rows[order], first)
    return area, x0, y0, x1, y1


@dataclass(frozen=True)
class _Runs:
    """Row-wise runs of equal ids: panoptic maps have long runs, so per-segment statistics and
    the painted maps cost a few passes over the runs instead of over the pixels."""

    shape: tuple[int, int]
    values: np.ndarray  #: id of each run
    lengths: np.ndarray
    rows: np.ndarray
    x0: np.ndarray
    x1: np.ndarray  #: inclusive

    @classmethod
    def of(cls, ids: np.ndarray) -> _Runs:
        height, width = ids.shape
        flat = ids.ravel()
        starts_mask = np.empty(flat.size, bool)
        starts_mask[0] = True
        np.not_equal(flat[1:], flat[:-1], out=starts_mask[1:])
        starts_mask[::width] = True  # every row starts a run
        starts = np.flatnonzero(starts_mask)
        lengths = np.diff(starts, append=flat.size)
        rows = starts // width
        x0 = starts - rows * width
        return cls((height, width), flat[starts], lengths, rows, x0, x0 + lengths - 1)

    def paint(self, run_values: np.ndarray) -> np.ndarray:
        return np.repeat(run_values, self.lengths).reshape(self.shape)


def _labels(values: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
    """Index into ``seg_ids`` of each run's id; ids missing from segments_info are an error."""
    order = np.argsort(seg_ids)
    pos = np.minimum(np.searchsorted(seg_ids[order], values), len(seg_ids) - 1)
    labels = order[pos]
    unknown = seg_ids[labels] != values
    if unknown.any():
        missing = np.unique(values[unknown])
        shown = ", ".join(str(int(v)) for v in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise CrayonError(f"the PNG has segment ids missing from segments_info: {shown}")
    return labels


def _check_geometry(info: Mapping[str, Any], area: int, bbox: tuple[int, int, int, int]) -> None:
    sid = info["id"]
    if area == 0:
        raise CrayonError(f"segment {sid} is listed in segments_info but has no pixels in the PNG")
    if "area" in info and int(info["area"]) != area:
        raise CrayonError(f"segment {sid}: area {info['area']} in the JSON but {area} pixels in the PNG")
    if "bbox" in info and [int(v) for v in info["bbox"]] != list(bbox):
        raise CrayonError(f"segment {sid}: bbox {list(info['bbox'])} in the JSON but {list(bbox)} in the PNG")
