"""The ideal tower: a stand-in vision tower whose features are the scene's per-patch ground truth.

A diagnostic, not a model: with perfect patch features in place of a tower's, whatever a
GroundedVLM still fails to learn is the connector's and the LLM's doing
(`model-looks-diagnosis.md`, sections 2-3). It recognises the sample-world pictures it
was built for by a hash of their pixel_values and returns ``feature_matrix(patch_truth(scene))``
for each, zero-padded to the real tower's width. Zero padding, not a fixed random projection:
the connector's first layer is linear and trainable, so a projection would add nothing it
cannot learn, while padding keeps feature j readable as ``patches.FEATURES[j]``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
import xxhash
from PIL import Image as PILImage
from torch import Tensor, nn

from datasets_builders.sample_world.patches import FEATURES, feature_matrix, patch_truth
from datasets_builders.sample_world.scene import generate_scene
from datasets_builders.sample_world.world import JPEG_QUALITY
from models.config import CLIP_MEAN, CLIP_STD, VisionConfig
from models.grounded_vlm import GroundedVLM
from models.inputs import pixels


class IdealTower(nn.Module):
    """VisionTower's surface (grid, image_size, patch_size, width, config.mean/std, features) over known scenes.

    Every requested layer gets the same truth map: the ideal tower has no layers. No parameters.
    """

    def __init__(self, seed: int, indices: Sequence[int], keys: Sequence[int], truth: Tensor, image_size: int,
                 patch_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        """Scenes ``indices`` of world ``seed``: their pictures' ``picture_key`` and (N, P*P, width) features."""
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch_size}")
        self.seed, self.indices = seed, tuple(indices)
        self.image_size, self.patch_size = image_size, patch_size
        self.grid = image_size // patch_size  #: patches per side
        self.width = int(truth.shape[-1])
        self.config = VisionConfig(image_size=image_size, frozen=True, mean=tuple(mean), std=tuple(std))
        self.register_buffer("truth", truth.float(), persistent=False)  # derived from the world, never saved
        self.row_of = {key: row for row, key in enumerate(keys)}

    @classmethod
    def for_world(cls, seed: int, indices: Sequence[int], image_size: int = 112, patch_size: int = 14,
                  hidden: int = 64, *, mean: Sequence[float] = CLIP_MEAN,
                  std: Sequence[float] = CLIP_STD) -> IdealTower:
        """Scenes ``indices`` of world ``seed``, pictured as a model sees the JPEGs the sample world writes."""
        if hidden < len(FEATURES):
            raise ValueError(f"hidden {hidden} cannot hold the {len(FEATURES)} truth features per patch")
        indices, grid = tuple(indices), image_size // patch_size
        keys, truth = [], []
        for index in indices:
            scene = generate_scene(seed, index)
            with PILImage.open(io.BytesIO(scene.jpeg(JPEG_QUALITY))) as picture:
                keys.append(picture_key(pixels([picture], image_size, mean, std)[0]))
            features = feature_matrix(patch_truth(scene, grid))
            truth.append(np.pad(features, ((0, 0), (0, hidden - features.shape[1]))))
        return cls(seed, indices, keys, torch.from_numpy(np.stack(truth)), image_size, patch_size, mean, std)

    def features(self, pixel_values: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """(B, 3, S, S) -> the same (B, P*P, width) truth map once per entry of ``layers``."""
        rows = [self._row(picture, i, len(pixel_values)) for i, picture in enumerate(pixel_values)]
        maps = self.truth[torch.tensor(rows, device=self.truth.device)].to(pixel_values.device)
        return [maps for _ in layers]

    def preprocess(self, images: Sequence[PILImage.Image]) -> Tensor:
        """As VisionTower.preprocess: plain bicubic resize, then mean/std."""
        return pixels(images, self.image_size, self.config.mean, self.config.std)

    @property
    def trainable(self) -> bool:
        return False

    @property
    def dtype(self) -> torch.dtype:
        return self.truth.dtype

    def _row(self, picture: Tensor, position: int, batch: int) -> int:
        row = self.row_of.get(picture_key(picture))
        if row is None:
            raise ValueError(
                f"the ideal tower knows scenes {_spans(self.indices)} of world seed {self.seed}; this picture "
                f"(image {position} of {batch}) is none of them. It needs the pixel_values models.inputs.pixels "
                f"makes from the sample world's JPEG bytes at {self.image_size} px, float32, unchanged")
        return row


def picture_key(picture: Tensor) -> int:
    """A hash of one (3, S, S) picture's float32 bytes: equal pixel_values, equal key, on any device."""
    data = picture.detach().to("cpu", torch.float32).contiguous().numpy()
    return xxhash.xxh3_128_intdigest(data.tobytes())


def use_ideal_tower(model: GroundedVLM, tower: IdealTower) -> GroundedVLM:
    """Put ``tower`` in place of ``model.vision``; connector, LLM and their weights stay as they are."""
    real = model.vision
    if (tower.grid, tower.width) != (real.grid, real.width):
        raise ValueError(f"the ideal tower gives a {tower.grid}x{tower.grid} grid of width {tower.width}; the model's "
                         f"connector expects {real.grid}x{real.grid} of width {real.width}")
    model.vision = tower.to(next(model.connector.parameters()).device)
    return model


def _spans(indices: Sequence[int]) -> str:
    """0, 1, 2, 5 -> '0..2, 5': a short name for a set of scene indices."""
    ordered, spans = sorted(set(indices)), []
    for index in ordered:
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)
