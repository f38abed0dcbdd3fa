"""Predictions -> COCO panoptic files that ``crayonflow build coco-panoptic --input OUT`` reads unchanged.

Layout under OUT::

    annotations/panoptic_segmented.json   images, annotations (segments_info), categories
    annotations/panoptic_segmented/       one RGB PNG of segment ids per image: "<image file>.png"
    images/                               the input images under their own names (hard links; copies
                                          where links are impossible), where the builder finds them
    rejects.json                          [{file, reason}] for images that could not be segmented
    segment.json                          the run's parameters and counts

PNG names append ".png" to the image's file name, so a PNG never shares a name with an input image
(the builder looks images up by name and must not land in the PNG folder). Each segment's area and
bbox are measured on the very map written (``formats.crayon.measure``), so the builder's exactness
check holds; segments the map does not show are dropped. ``score`` is kept per segment (null where
the backend has none). Image ids are 1..N over the sorted input listing, so an image keeps its id
whichever others fail. The JSON files are written last, through temp names and renames, with
entries sorted: the same predictions give the same bytes. A hidden ``.crayonflow-segment`` marker
lets a later run replace its own earlier output; any other non-empty OUT is refused.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from datasets_builders.formats.crayon import encode_ids, measure
from datasets_builders.segment.prediction import CategoryTable, PanopticPrediction, SetupError
from datasets_builders.store.atomic import write_bytes_atomic

PANOPTIC_NAME = "panoptic_segmented"
MARKER = ".crayonflow-segment"


@dataclass(frozen=True)
class EncodedPrediction:
    png: bytes  #: the panoptic PNG (segment id = R + 256 G + 256^2 B)
    segments: list[dict[str, Any]]  #: segments_info entries, in increasing id


def encode(prediction: PanopticPrediction) -> EncodedPrediction:
    """The PNG and segments_info of one prediction; ValueError if the map shows an unlisted id."""
    geometry = measure(prediction.segmentation)
    listed = {s.id for s in prediction.segments}
    stray = sorted(set(geometry) - listed - {0})
    if stray:
        raise ValueError(f"segmentation has segment ids missing from its segments: {stray[:5]}")
    segments = []
    for s in sorted(prediction.segments, key=lambda s: s.id):
        if s.id not in geometry:  # predicted, but no pixel of the map shows it
            continue
        area, bbox = geometry[s.id]
        segments.append({"id": s.id, "category_id": s.label + 1, "area": area, "bbox": list(bbox), "iscrowd": 0,
                         "score": None if s.score is None else round(s.score, 6)})
    out = io.BytesIO()
    PILImage.fromarray(encode_ids(prediction.segmentation), "RGB").save(out, "PNG")
    return EncodedPrediction(out.getvalue(), segments)


@dataclass(frozen=True)
class OutputLayout:
    root: Path

    @property
    def json_path(self) -> Path:
        return self.root / "annotations" / f"{PANOPTIC_NAME}.json"

    @property
    def png_dir(self) -> Path:
        return self.root / "annotations" / PANOPTIC_NAME

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def rejects_path(self) -> Path:
        return self.root / "rejects.json"

    @property
    def run_path(self) -> Path:
        return self.root / "segment.json"

    def prepare(self) -> None:
        """An empty OUT, or one holding an earlier segment run (whose files are removed first)."""
        if self.root.exists() and not self.root.is_dir():
            raise SetupError(f"--out {self.root} exists and is not a folder")
        if self.root.is_dir() and any(self.root.iterdir()):
            if not (self.root / MARKER).is_file():
                raise SetupError(f"--out {self.root} is not empty and holds no earlier segment output; "
                                 "choose an empty or new folder")
            for path in (self.run_path, self.json_path, self.rejects_path):  # the "complete" files first
                path.unlink(missing_ok=True)
            for folder in (self.png_dir, self.images_dir):
                shutil.rmtree(folder, ignore_errors=True)
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).write_text("written by crayonflow segment; a later run may replace this folder\n")


@dataclass
class PanopticWriter:
    """Collects one run's results (in any order) and writes them as COCO panoptic files."""

    layout: OutputLayout
    source_dir: Path  #: the input image folder
    categories: CategoryTable
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, str]] = field(default_factory=list)

    def add(self, file: str, image_id: int, width: int, height: int, png: bytes,
            segments: list[dict[str, Any]]) -> None:
        png_name = f"{file}.png"
        (self.layout.png_dir / png_name).write_bytes(png)
        _link_or_copy(self.source_dir / file, self.layout.images_dir / file)
        self.images.append({"id": image_id, "file_name": file, "width": width, "height": height})
        self.annotations.append({"image_id": image_id, "file_name": png_name, "segments_info": segments})

    def reject(self, file: str, reason: str) -> None:
        self.rejects.append({"file": file, "reason": reason})

    @property
    def segments(self) -> int:
        return sum(len(a["segments_info"]) for a in self.annotations)

    def counts(self) -> dict[str, int]:
        return {"images": len(self.images) + len(self.rejects), "segmented": len(self.images),
                "rejected": len(self.rejects), "segments": self.segments}

    def finish(self, parameters: dict[str, Any]) -> None:
        """The JSON files, last: panoptic JSON, rejects, then segment.json (the run is complete)."""
        document = {
            "info": {"description": "panoptic predictions by crayonflow segment"},
            "images": sorted(self.images, key=lambda i: i["id"]),
            "annotations": sorted(self.annotations, key=lambda a: a["image_id"]),
            "categories": self.categories.coco(),
        }
        _write_json(self.layout.json_path, document)
        _write_json(self.layout.rejects_path, sorted(self.rejects, key=lambda r: r["file"]))
        _write_json(self.layout.run_path, {**parameters, "counts": self.counts()})


def _write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode())


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copyfile(source, target)
