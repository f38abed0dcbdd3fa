"""What every segmentation backend returns, and the label space it is written in.

A prediction is an (H, W) int32 map of segment ids at the image's original size (0 = void, no
segment) plus, per segment, its id, its label id and the model's score. Label ids are contiguous
from 0, in the model's own order; the COCO category id written for label ``l`` is ``l + 1``, so the
crayon semantic index the coco-panoptic builder derives (1 + position among categories sorted by
id) is ``l + 1`` too: exactly CoLLaVO's ``s = label_id + 1``.

Category names and isthing come from a COCO panoptic categories list (``--categories FILE``,
matched to labels by position after sorting by id) or from the model config's ``id2label``. With
no file, only COCO panoptic's 133 labels say which are things (0..79 things, 80..132 stuff, the
detectron2/transformers contiguous order); any other label count needs the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

COCO_PANOPTIC_LABELS = 133
COCO_THINGS = 80  #: labels 0..79 are things in COCO panoptic's contiguous order
MAX_SEGMENT_ID = (1 << 24) - 1  #: the largest id an RGB panoptic PNG can hold


class SetupError(ValueError):
    """A wrong folder, checkpoint, backend or categories file: one line, and the command exits 2."""


class PredictedSegment(NamedTuple):
    id: int  #: the segment's id in the map, 1..2^24-1
    label: int  #: label id, 0-based, in the model's label order
    score: float | None  #: the model's confidence; None where the backend gives none


@dataclass(frozen=True)
class PanopticPrediction:
    segmentation: np.ndarray  #: (H, W) int32 segment ids at the original image size, 0 = void
    segments: tuple[PredictedSegment, ...]

    def __post_init__(self) -> None:
        seg = self.segmentation
        if seg.ndim != 2 or seg.dtype != np.int32:
            raise ValueError(f"segmentation must be a 2-D int32 map, got {seg.dtype} of shape {seg.shape}")
        ids = [s.id for s in self.segments]
        if len(set(ids)) != len(ids) or any(not 0 < i <= MAX_SEGMENT_ID for i in ids):
            raise ValueError(f"segment ids must be distinct and in 1..{MAX_SEGMENT_ID}, got {ids}")

    @property
    def height(self) -> int:
        return int(self.segmentation.shape[0])

    @property
    def width(self) -> int:
        return int(self.segmentation.shape[1])


@dataclass(frozen=True)
class Category:
    name: str
    isthing: bool
    supercategory: str | None = None
    source_id: int | None = None  #: the id in the categories file it came from (detectron2 maps use it)


@dataclass(frozen=True)
class CategoryTable:
    """The categories by label id (position = label)."""

    categories: tuple[Category, ...]

    def __len__(self) -> int:
        return len(self.categories)

    def coco(self) -> list[dict[str, Any]]:
        """The ``categories`` list of the written panoptic JSON: id = label + 1."""
        out = []
        for label, c in enumerate(self.categories):
            entry: dict[str, Any] = {"id": label + 1, "name": c.name}
            if c.supercategory is not None:
                entry["supercategory"] = c.supercategory
            entry["isthing"] = int(c.isthing)
            out.append(entry)
        return out

    @classmethod
    def from_coco(cls, items: Sequence[Mapping[str, Any]]) -> CategoryTable:
        """Labels in the order of the categories sorted by id (COCO panoptic: things, then stuff)."""
        ordered = sorted(items, key=lambda c: int(c["id"]))
        return cls(tuple(Category(str(c["name"]), bool(c.get("isthing", 0)),
                                  str(c["supercategory"]) if c.get("supercategory") is not None else None,
                                  int(c["id"])) for c in ordered))

    @classmethod
    def from_file(cls, path: Path, num_labels: int | None) -> CategoryTable:
        """A COCO panoptic categories JSON: a list, or a document with a ``categories`` list."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            items = doc["categories"] if isinstance(doc, dict) else doc
            table = cls.from_coco(items)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SetupError(f"{path}: expected a COCO panoptic categories list of {{id, name, isthing}} "
                             f"({type(e).__name__}: {e})") from None
        if num_labels is not None and len(table) != num_labels:
            raise SetupError(f"{path}: lists {len(table)} categories but the model has {num_labels} labels")
        return table

    @classmethod
    def from_id2label(cls, id2label: Mapping[Any, str]) -> CategoryTable:
        """From a model config; isthing only for COCO panoptic's 133 labels (0..79 are things)."""
        labels = {int(k): str(v) for k, v in id2label.items()}
        n = len(labels)
        if sorted(labels) != list(range(n)):
            raise SetupError(f"the model's id2label is not contiguous from 0: {sorted(labels)[:10]} ...")
        if n != COCO_PANOPTIC_LABELS:
            raise SetupError(f"the model has {n} labels, not COCO panoptic's {COCO_PANOPTIC_LABELS}; pass "
                             "--categories FILE (a COCO panoptic categories JSON) to say which are things")
        return cls(tuple(Category(labels[i], i < COCO_THINGS) for i in range(n)))
