"""Mask2Former through transformers, as CoLLaVO ran it (model-spec.md 1.1-1.3).

``Mask2FormerForUniversalSegmentation`` and its image processor come from a LOCAL checkpoint
folder only (``local_files_only=True``: nothing is downloaded), e.g. a snapshot of
``facebook/mask2former-swin-large-coco-panoptic``. Inference is batched under
``torch.inference_mode()``, on CUDA with bf16 autocast when present, else on CPU in float32; then
``post_process_panoptic_segmentation(threshold, mask_threshold, label_ids_to_fuse=set(),
target_sizes=[original (h, w)])``, one image at a time, with the mask logits first cropped to the
image's unpadded area (transformers does not crop the batch padding itself).

Presets build a randomly initialised model from a config with a fixed torch seed instead:
``tiny`` (Swin embed 16, depths [1,1,1,1], hidden 32, 20 queries, 128x128 input; the sample
world's 10 categories) for tests and the demo, ``swin-base`` (Swin-B dims, 133 labels, 1024x1024)
for speed measurements. Random heads predict near-uniform classes, so no query would pass
CoLLaVO's thresholds; the class head is scaled x100 and the mask embedder's last layer x30 after
initialisation. The tiny model then gives 1-6 segments on every sample-world image at CoLLaVO's
own ``threshold=0.5, mask_threshold=0.95`` (seed-0 world, 64 images: 2.6 segments on average, 18%
of pixels void, scores 0.95-1.0, all four thing classes and one stuff class), so tests and the
demo need no lowered thresholds. The PIL image processor is used for presets (same
pixels whether or not torchvision is installed); checkpoints use transformers' default, or PIL
when torchvision is missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image as PILImage

from datasets_builders.segment.prediction import CategoryTable, PanopticPrediction, PredictedSegment, SetupError

SEED = 0
_SHARPEN_CLASS, _SHARPEN_MASK = 100.0, 30.0
_MASK_EMBEDDER_LAST = "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0"
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"side": 128, "queries": 20, "hidden": 32, "ffn": 64, "encoder_ffn": 64, "heads": 2,
             "encoder_layers": 1, "decoder_layers": 2,
             "swin": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4}},
    "swin-base": {"side": 1024, "queries": 100, "hidden": 256, "ffn": 2048, "encoder_ffn": 1024, "heads": 8,
                  "encoder_layers": 6, "decoder_layers": 10,
                  "swin": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12}},
}


@dataclass(frozen=True)
class ModelSpec:
    """Which model an actor builds (picklable: every actor constructs its own copy)."""

    checkpoint: Path | None = None  #: a local folder written by ``save_pretrained``
    preset: str | None = None  #: or a random model: "tiny" or "swin-base"


def categories(spec: ModelSpec) -> CategoryTable:
    """The label table of the model ``spec`` builds; SetupError for an unusable checkpoint folder."""
    if spec.preset == "tiny":
        return CategoryTable.from_coco(_world_categories())
    if spec.preset is not None:
        return CategoryTable.from_id2label(_preset_config(spec.preset).id2label)
    return CategoryTable.from_id2label(check_checkpoint(spec.checkpoint).id2label)


def num_labels(spec: ModelSpec) -> int:
    if spec.preset is not None:
        return _preset_config(spec.preset).num_labels
    return check_checkpoint(spec.checkpoint).num_labels


def require_scipy() -> None:
    """transformers' Mask2FormerForUniversalSegmentation builds its training loss, which needs scipy."""
    if importlib.util.find_spec("scipy") is None:
        raise SetupError("transformers' Mask2Former needs scipy (for its loss, built even for inference): "
                         "pip install scipy")


def check_checkpoint(path: Path | None) -> Any:
    """The checkpoint's config, read locally; SetupError (one line) when the folder cannot serve."""
    from transformers import AutoConfig

    if path is None:
        raise SetupError("the mask2former backend needs --checkpoint DIR (a local Mask2Former folder) or --tiny")
    path = Path(path)
    if not path.is_dir():
        raise SetupError(f"checkpoint folder {path} does not exist (models are loaded locally only, never downloaded)")
    missing = [n for n in ("config.json", "preprocessor_config.json") if not (path / n).is_file()]
    if missing:
        raise SetupError(f"checkpoint folder {path} has no {' or '.join(missing)}; expected a Mask2Former "
                         "folder written by save_pretrained (config, preprocessor config, weights)")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise SetupError(f"checkpoint folder {path}: unreadable config.json ({type(e).__name__}: {e})") from None
    if config.model_type != "mask2former":
        raise SetupError(f"checkpoint folder {path} holds a {config.model_type!r} model, not mask2former")
    return config


def load(spec: ModelSpec) -> tuple[Any, Any]:
    """(model in eval mode, image processor) for ``spec``."""
    from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

    if spec.preset is not None:
        return _random_model(spec.preset)
    backend = None if importlib.util.find_spec("torchvision") else "pil"
    model = Mask2FormerForUniversalSegmentation.from_pretrained(spec.checkpoint, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(spec.checkpoint, local_files_only=True, backend=backend)
    return model.eval(), processor


class Mask2FormerSegmenter:
    """One model, many batches: ``predict(images)`` -> one PanopticPrediction per image."""

    def __init__(self, spec: ModelSpec, *, threshold: float, mask_threshold: float, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, self.processor = load(spec)
        self.model = model.to(self.device)
        self.threshold, self.mask_threshold = threshold, mask_threshold

    def predict(self, images: Sequence[PILImage.Image]) -> list[PanopticPrediction]:
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels, pixel_mask = inputs["pixel_values"].to(self.device), inputs["pixel_mask"].to(self.device)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            outputs = self.model(pixel_values=pixels, pixel_mask=pixel_mask)
        classes, masks = outputs.class_queries_logits.float(), outputs.masks_queries_logits.float()
        return [self._one(classes[i:i + 1], _unpadded(masks[i], pixel_mask[i]), image)
                for i, image in enumerate(images)]

    def _one(self, classes: Any, masks: Any, image: PILImage.Image) -> PanopticPrediction:
        result = self.processor.post_process_panoptic_segmentation(
            SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks[None]),
            threshold=self.threshold, mask_threshold=self.mask_threshold, label_ids_to_fuse=set(),
            target_sizes=[(image.height, image.width)])[0]
        segmentation = result["segmentation"].cpu().numpy().astype(np.int32)
        segmentation[segmentation < 0] = 0  # transformers marks "no segment at all" with -1
        segments = tuple(PredictedSegment(int(s["id"]), int(s["label_id"]), float(s["score"]))
                         for s in result["segments_info"])
        return PanopticPrediction(segmentation, segments)


def _unpadded(masks: Any, pixel_mask: Any) -> Any:
    """(Q, h, w) mask logits cropped to the part covering the image, not the batch padding."""
    rows, cols = int(pixel_mask.any(1).sum()), int(pixel_mask.any(0).sum())
    full_h, full_w = pixel_mask.shape
    h, w = masks.shape[-2:]
    return masks[:, : -(-rows * h // full_h), : -(-cols * w // full_w)]


def _world_categories() -> list[dict[str, Any]]:
    from datasets_builders.sample_world.coco_panoptic import categories as world_categories

    return world_categories()


def _preset_config(preset: str) -> Any:
    from transformers import Mask2FormerConfig, SwinConfig

    if preset not in PRESETS:
        raise SetupError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    names = ([c["name"] for c in sorted(_world_categories(), key=lambda c: c["id"])] if preset == "tiny"
             else [f"label_{i}" for i in range(133)])
    backbone = SwinConfig(image_size=p["side"], drop_path_rate=0.0,
                          out_features=["stage1", "stage2", "stage3", "stage4"], **p["swin"])
    return Mask2FormerConfig(
        backbone_config=backbone, feature_size=p["hidden"], mask_feature_size=p["hidden"], hidden_dim=p["hidden"],
        encoder_feedforward_dim=p["encoder_ffn"], dim_feedforward=p["ffn"], num_attention_heads=p["heads"],
        encoder_layers=p["encoder_layers"], decoder_layers=p["decoder_layers"], num_queries=p["queries"],
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


def _random_model(preset: str) -> tuple[Any, Any]:
    import torch
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessorPil

    config = _preset_config(preset)
    torch.manual_seed(SEED)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():
        model.class_predictor.weight.mul_(_SHARPEN_CLASS)
        model.get_submodule(_MASK_EMBEDDER_LAST).weight.mul_(_SHARPEN_MASK)
    side = PRESETS[preset]["side"]
    return model, Mask2FormerImageProcessorPil(size={"height": side, "width": side})
