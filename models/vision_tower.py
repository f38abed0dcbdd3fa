"""The vision encoder: any transformers vision tower, frozen by default, features by layer.

CLIP and SigLIP vision models, and ``Blip2VisionModel`` (the EVA ViT-g that MiniGPT-v2 uses), come
from a local ``save_pretrained`` folder (a full CLIP/SigLIP/BLIP-2 checkpoint works: only its
vision part is loaded) or from a transformers config for a random initialisation. ``features``
returns the hidden states asked for, CLS dropped, as (B, N, D) patch tokens in raster order;
``post_layernorm`` optionally applies the tower's final norm (MiniGPT-v2's ``ln_vision`` is
BLIP-2's ``post_layernorm`` over the last layer). An ``image_size`` other than the checkpoint's
interpolates the position embeddings on the fly (MiniGPT-v2 runs the 224 px ViT-g at 448 px).

Preprocessing is MiniGPT-v2's: a plain bicubic resize to image_size x image_size (no aspect
preservation, no crop, so normalised boxes stay true), then mean/std normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image as PILImage
from torch import Tensor, nn

from models.config import ConfigError, VisionConfig
from models.inputs import pixels

TOWERS = {  # model_type -> (transformers class name, has a CLS token)
    "clip": ("CLIPVisionModel", True), "clip_vision_model": ("CLIPVisionModel", True),
    "siglip": ("SiglipVisionModel", False), "siglip_vision_model": ("SiglipVisionModel", False),
    "blip-2": ("Blip2VisionModel", True), "blip_2_vision_model": ("Blip2VisionModel", True),
}


class VisionTower(nn.Module):
    """A transformers vision model plus what the connector needs to know about its grid."""

    def __init__(self, model: nn.Module, config: VisionConfig, has_cls: bool) -> None:
        super().__init__()
        self.model, self.config, self.has_cls = model, config, has_cls
        native = int(model.config.image_size)
        self.image_size = config.image_size or native
        self.patch_size = int(model.config.patch_size)
        if self.image_size % self.patch_size:
            raise ConfigError(f"model.vision.image_size: {self.image_size} is not a multiple of the patch "
                              f"size {self.patch_size}")
        self.interpolate = self.image_size != native
        self.grid = self.image_size // self.patch_size  #: patches per side
        self.width = int(model.config.hidden_size)
        self.layers = int(model.config.num_hidden_layers)
        if config.frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> VisionTower:
        """A frozen tower stays in eval mode (no dropout, fixed norms) whatever the caller trains."""
        return super().train(mode and self.trainable)

    @property
    def trainable(self) -> bool:
        """Frozen unless a training stage made its weights trainable (``GroundedVLM.set_trainable``)."""
        return any(p.requires_grad for p in self.model.parameters())

    def features(self, pixel_values: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """(B, 3, S, S) -> one (B, N, D) patch-token map per index into hidden_states."""
        for index in layers:
            if not -(self.layers + 1) <= index <= self.layers:
                raise ConfigError(f"vision layer {index} does not exist: the tower has {self.layers} layers "
                                  f"({self.layers + 1} hidden states)")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            out = self.model(pixel_values=pixel_values.to(self.dtype), output_hidden_states=True,
                             interpolate_pos_encoding=self.interpolate)
        maps = []
        for index in layers:
            tokens = out.hidden_states[index]
            if self.config.post_layernorm:
                tokens = self.model.post_layernorm(tokens)
            maps.append(tokens[:, 1:] if self.has_cls else tokens)
        return maps

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, images: Sequence[PILImage.Image]) -> Tensor:
        """PIL images -> (B, 3, S, S) float tensor: bicubic resize without crop, then normalise."""
        return pixels(images, self.image_size, self.config.mean, self.config.std)


def build_vision_tower(config: VisionConfig, base_dir: Path | None = None) -> VisionTower:
    """From ``config.checkpoint`` (relative paths resolve against ``base_dir``) or a random init."""
    import transformers

    if config.checkpoint is not None:
        path = local_folder(config.checkpoint, base_dir, "model.vision.checkpoint")
        model_type = transformers.AutoConfig.from_pretrained(path, local_files_only=True).model_type
        class_name, has_cls = _tower(model_type, "model.vision.checkpoint")
        model = getattr(transformers, class_name).from_pretrained(path, local_files_only=True)
    else:
        class_name, has_cls = _tower(config.model_type, "model.vision.model_type")
        model_class = getattr(transformers, class_name)
        model = model_class(model_class.config_class(**config.init))
    return VisionTower(model, config, has_cls)


def _tower(model_type: str, where: str) -> tuple[str, bool]:
    if model_type not in TOWERS:
        raise ConfigError(f"{where}: {model_type!r} is not a supported vision tower; "
                          f"choose one of {', '.join(sorted(TOWERS))}")
    return TOWERS[model_type]


def local_folder(path: str, base_dir: Path | None, where: str) -> Path:
    folder = Path(path)
    if not folder.is_absolute() and base_dir is not None:
        folder = base_dir / folder
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{where}: {folder} is not a local save_pretrained folder (no config.json); "
                          "weights are loaded locally only, never downloaded")
    return folder
