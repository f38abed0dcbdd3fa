"""detectron2 panoptic models (PanopticFPN, Mask2Former's detectron2 code base) as a backend.

detectron2's inference output per image has ``"panoptic_seg": (pred, segments_info)``: ``pred``
an (H, W) int tensor of segment ids, and per segment ``{"id", "isthing", "category_id", ...}``;
a pixel whose id is not listed is void (detectron2's docs/tutorials/models.md). ``category_id``
is contiguous WITHIN things or WITHIN stuff: PanopticFPN numbers things 0..79 and stuff 1..53
(its semantic class 0 means "a thing"), and only things carry a ``score``. Mask2Former's
detectron2 code numbers all 133 classes in one space. ``from_detectron2`` maps both onto one
contiguous label space with ``thing_ids``/``stuff_ids`` (contiguous id -> label id); stuff
segments, which have no score, keep ``score=None`` (written as JSON null): an invented 1.0 would
read as certainty. The ``segments_info=None`` form (ids encoding ``category * label_divisor``) is
refused with a clear error.

detectron2 has no PyPI wheel, so it is optional: ``require_detectron2`` says how to install it,
and ``Detectron2Segmenter`` imports it only when constructed. Its checkpoint folder holds the
detectron2 ``config.yaml`` and ``model_final.pth``; labels come from ``--categories`` (a COCO
panoptic categories file), matched to the model through the dataset metadata's
``thing/stuff_dataset_id_to_contiguous_id``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from datasets_builders.segment.prediction import CategoryTable, PanopticPrediction, PredictedSegment, SetupError

INSTALL_HINT = ("detectron2 is not installed and has no PyPI wheel; install it against this torch with "
                "pip install 'git+https://github.com/facebookresearch/detectron2.git' "
                "(it compiles; needs a C++ compiler and a matching torch)")
LabelMap = Mapping[int, int] | Sequence[int]


def installed() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def require_detectron2() -> None:
    if not installed():
        raise SetupError(INSTALL_HINT)


def from_detectron2(panoptic_seg: Any, segments_info: Sequence[Mapping[str, Any]] | None, *,
                    thing_ids: LabelMap, stuff_ids: LabelMap) -> PanopticPrediction:
    """detectron2's ``(panoptic_seg, segments_info)`` -> PanopticPrediction in our label space.

    ``thing_ids[c]`` / ``stuff_ids[c]``: the label id of thing / stuff contiguous category ``c``.
    Pixels with an id missing from ``segments_info`` (or negative) become void (0).
    """
    if segments_info is None:
        raise ValueError("detectron2 output without segments_info (ids = category * label_divisor) is not supported")
    seg = _to_numpy(panoptic_seg)
    if seg.ndim != 2:
        raise ValueError(f"panoptic_seg must be (H, W), got shape {seg.shape}")
    segments = []
    for info in sorted(segments_info, key=lambda s: int(s["id"])):
        table = thing_ids if info.get("isthing", False) else stuff_ids
        kind = "thing" if info.get("isthing", False) else "stuff"
        category = int(info["category_id"])
        try:
            label = int(table[category])
        except (KeyError, IndexError):
            raise ValueError(f"segment {info['id']}: {kind} category_id {category} has no label") from None
        score = info.get("score")
        segments.append(PredictedSegment(int(info["id"]), label, None if score is None else float(score)))
    listed = np.array([s.id for s in segments], dtype=np.int64)
    out = np.where(np.isin(seg, listed), seg, 0).astype(np.int32)
    return PanopticPrediction(out, tuple(segments))


def label_maps(metadata: Any, categories: CategoryTable) -> tuple[dict[int, int], dict[int, int]]:
    """(thing_ids, stuff_ids) from detectron2 dataset metadata and our categories (by dataset id)."""
    label_of = {c.source_id: label for label, c in enumerate(categories.categories)}
    maps = []
    for attr in ("thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id"):
        mapping = getattr(metadata, attr, None) or {}
        maps.append({int(contig): label_of[int(dataset_id)] for dataset_id, contig in mapping.items()
                     if int(dataset_id) in label_of})
    return maps[0], maps[1]


class Detectron2Segmenter:
    """detectron2's predictor, batched; constructed only where detectron2 is importable."""

    def __init__(self, checkpoint: Path, categories: CategoryTable) -> None:
        require_detectron2()
        import torch
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import get_cfg
        from detectron2.data import MetadataCatalog
        from detectron2.data import transforms as T
        from detectron2.modeling import build_model

        config_file = Path(checkpoint) / "config.yaml"
        if not config_file.is_file():
            raise SetupError(f"detectron2 checkpoint folder {checkpoint} has no config.yaml")
        cfg = get_cfg()
        cfg.merge_from_file(str(config_file))
        weights = Path(checkpoint) / "model_final.pth"
        cfg.MODEL.WEIGHTS = str(weights) if weights.is_file() else cfg.MODEL.WEIGHTS
        cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = build_model(cfg).eval()
        DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.bgr = cfg.INPUT.FORMAT == "BGR"
        self.thing_ids, self.stuff_ids = label_maps(MetadataCatalog.get(cfg.DATASETS.TEST[0]), categories)

    def predict(self, images: Sequence[PILImage.Image]) -> list[PanopticPrediction]:
        import torch

        batch = []
        for image in images:
            pixels = np.asarray(image.convert("RGB"))[:, :, ::-1 if self.bgr else 1]
            resized = self.resize.get_transform(pixels).apply_image(pixels)
            batch.append({"image": torch.as_tensor(resized.transpose(2, 0, 1).copy()),
                          "height": image.height, "width": image.width})
        with torch.inference_mode():
            outputs = self.model(batch)
        return [from_detectron2(*o["panoptic_seg"], thing_ids=self.thing_ids, stuff_ids=self.stuff_ids)
                for o in outputs]


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on the GPU
        values = values.detach().cpu().numpy()
    return np.asarray(values).astype(np.int64)
