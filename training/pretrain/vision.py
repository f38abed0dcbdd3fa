"""``crayonflow pretrain vision``: a tiny CLIP ViT whose patch tokens name what they show.

Why: a random tower's patches carry colour and row but not objects, and a VLM cannot learn to look
at features that do not name anything (docs/model-looks.md). Nothing may be downloaded, so the
tower is pretrained here with dense supervision from the sample world's exact segment maps
(``patch_truth``) on freshly rendered scenes of a world of its own (never the demo world's). Each
patch token, read exactly where the VLM reads it (``VisionTower.features`` at the feature layer),
feeds three linear heads:

- category: soft cross-entropy against the patch's 10 category fractions (4 shapes, 6 stuff);
- colour: soft cross-entropy against its thing-colour fractions, weighted by its thing share;
- shape: soft cross-entropy against the shape fractions summed over the patch's
  ``(2 shape_radius + 1)^2`` neighbourhood, on every patch that touches a thing. At radius 0 it
  is the patch's own shape; at radius 1 a patch also learns the shape of the object next to it,
  which an object 1-2 patches wide needs (its own patch shows a blob, not a shape).

Shape is the hard part: a few hundred scenes are memorised (shape right on training scenes, at
chance on held-out ones); the defaults (``DEFAULTS``: 2,000 scenes, 2,000 steps, lr 3e-3) are the
smallest measured setting where held-out shape per patch clearly beats chance, and there radius 0
read a patch's own shape better than radius 1 (docs/model-looks.md).

Pictures go through the VLM's own path: the world's JPEG bytes, then ``models.inputs.pixels``.
Accuracies are measured on a fixed held-out scene set of the same world (indices from
``HELD_OUT_FIRST``), the same whatever ``scenes`` is. The folder holds ``save_pretrained`` of the
CLIPVisionModel (``tiny(vision_checkpoint=...)`` loads it) and the heads in ``patch-heads.pt``
(the VLM ignores them; they let the accuracies be measured again).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch import Tensor, nn

import datasets_builders.sample_world.patches as patches_module
from datasets_builders.sample_world.patches import CATEGORIES, COLOURS, patch_truth
from datasets_builders.sample_world.scene import THING_SHAPES, generate_scene
from datasets_builders.sample_world.world import JPEG_QUALITY
from models.config import CLIP_MEAN, CLIP_STD, VisionConfig
from models.inputs import pixels
from models.presets import TINY_VISION
from models.vision_tower import VisionTower, build_vision_tower
from training.optim import learning_rate, set_learning_rate
from training.plan import Schedule
from training.pretrain.cache import cached_folder
from training.pretrain.defaults import VISION_DEFAULTS as DEFAULTS, VISION_WORLD_SEED as WORLD_SEED

HELD_OUT_FIRST = 10_000_000  #: held-out scene indices start here; training scenes stay below
HEADS_FILE = "patch-heads.pt"
SHAPES = len(THING_SHAPES)  #: CATEGORIES starts with the thing shapes

#: (description, completed, total): what the command's progress bar shows
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PatchData:
    """Rendered scenes as the tower sees them, and each patch's truth, patches in raster order."""

    pixel_values: Tensor  #: (N, 3, S, S) float32, from the JPEG bytes through models.inputs.pixels
    categories: Tensor  #: (N, P*P, 10) category fractions
    colours: Tensor  #: (N, P*P, 7) thing-colour fractions of the whole patch
    shapes_near: Tensor  #: (N, P*P, 4) shape fractions summed over each patch's neighbourhood

    def __len__(self) -> int:
        return len(self.pixel_values)


class PatchHeads(nn.Module):
    """Linear per-patch read-outs: linear so the tokens themselves, not a deep head, must name things."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.category = nn.Linear(width, len(CATEGORIES))
        self.colour = nn.Linear(width, len(COLOURS))
        self.shape = nn.Linear(width, SHAPES)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.category(tokens), self.colour(tokens), self.shape(tokens)


def tiny_tower(image_size: int, seed: int) -> VisionTower:
    """The tiny preset's random CLIP ViT at ``image_size``, trainable."""
    torch.manual_seed(seed)
    return build_vision_tower(VisionConfig(init={**TINY_VISION, "image_size": image_size}, frozen=False))


def render_scenes(world_seed: int, indices: Sequence[int], image_size: int, patch_size: int, shape_radius: int,
                  progress: Progress | None = None, description: str = "rendering") -> PatchData:
    """Scenes ``indices`` of world ``world_seed``, pictured and measured as the VLM would see them."""
    grid = image_size // patch_size
    pictures, categories, colours = [], [], []
    for done, index in enumerate(indices):
        scene = generate_scene(world_seed, index)
        with PILImage.open(io.BytesIO(scene.jpeg(JPEG_QUALITY))) as picture:
            pictures.append(pixels([picture], image_size, CLIP_MEAN, CLIP_STD))  # the VLM's own preprocessing
        truth = patch_truth(scene, grid)
        categories.append(truth.categories)
        colours.append(truth.colours)
        if progress and ((done + 1) % 25 == 0 or done + 1 == len(indices)):
            progress(description, done + 1, len(indices))
    by_patch = torch.from_numpy(np.stack(categories))  # (N, P, P, 10); flatten(1, 2): raster order, as the tokens
    shapes_near = _neighbourhood_sum(by_patch[..., :SHAPES], shape_radius)
    return PatchData(torch.cat(pictures), by_patch.flatten(1, 2), torch.from_numpy(np.stack(colours)).flatten(1, 2),
                     shapes_near.flatten(1, 2))


def _neighbourhood_sum(maps: Tensor, radius: int) -> Tensor:
    """(N, P, P, C) -> each patch's sum over the (2 radius + 1)^2 patches around it (zero outside)."""
    if radius == 0:
        return maps.clone()
    channels_first = maps.permute(0, 3, 1, 2)
    summed = F.avg_pool2d(channels_first, 2 * radius + 1, stride=1, padding=radius, count_include_pad=True)
    return (summed * (2 * radius + 1) ** 2).permute(0, 2, 3, 1).contiguous()


def patch_losses(tower: VisionTower, heads: PatchHeads, pixel_values: Tensor, categories: Tensor, colours: Tensor,
                 shapes_near: Tensor) -> dict[str, Tensor]:
    """The three soft cross-entropies of one batch (each a weighted mean over its patches)."""
    tokens = tower.features(pixel_values, [tower.config.feature_layer])[0]
    category_logits, colour_logits, shape_logits = heads(tokens)
    category = _soft_cross_entropy(category_logits, categories, torch.ones_like(categories[..., 0]))
    thing_share = categories[..., :SHAPES].sum(-1)
    colour = _soft_cross_entropy(colour_logits, colours / thing_share.clamp_min(1e-6)[..., None], thing_share)
    near = shapes_near.sum(-1)
    # weight: a patch that a thing only grazes counts as little as it shows of it
    shape = _soft_cross_entropy(shape_logits, shapes_near / near.clamp_min(1e-6)[..., None], near.clamp(max=1.0))
    return {"category": category, "colour": colour, "shape": shape}


def _soft_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    per_patch = -(target * F.log_softmax(logits, dim=-1)).sum(-1)
    return (per_patch * weight).sum() / weight.sum().clamp_min(1e-6)


def fit_patch_heads(tower: VisionTower, heads: PatchHeads, data: PatchData, *, steps: int, batch: int, lr: float,
                    seed: int, flip: bool = False, progress: Progress | None = None) -> dict[str, float]:
    """Train tower and heads together on ``data``: AdamW, warm-up then cosine. Returns the last losses.

    ``flip``: each scene is mirrored left-right with probability 1/2, which keeps every shape's class
    (triangles point up either way) and doubles the distinct pictures a memorising tower must learn.
    """
    grid = tower.grid
    parameters = [*tower.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.05)
    schedule = Schedule(max=lr, min=lr / 10, warmup=min(50, steps // 10))
    order = torch.Generator().manual_seed(seed)
    tower.train()
    heads.train()
    last: dict[str, float] = {}
    for step in range(steps):
        set_learning_rate(optimizer, learning_rate(schedule, step, steps))
        rows = torch.randint(len(data), (batch,), generator=order)
        mirrored = torch.rand(batch, generator=order) < 0.5 if flip else torch.zeros(batch, dtype=torch.bool)
        losses = patch_losses(tower, heads, *(_mirror(t[rows], mirrored, grid) for t in (
            data.pixel_values, data.categories, data.colours, data.shapes_near)))
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        last = {name: loss.item() for name, loss in losses.items()}
        if progress:
            progress(f"training: loss {sum(last.values()):.3f}", step + 1, steps)
    return last


def _mirror(values: Tensor, mirrored: Tensor, grid: int) -> Tensor:
    """Mirror the rows ``mirrored`` left-right: pictures (B, 3, S, S) or raster-order truth (B, P*P, C)."""
    if not mirrored.any():
        return values
    if values.dim() == 4:
        flipped = values.flip(-1)
    else:
        flipped = values.unflatten(1, (grid, grid)).flip(2).flatten(1, 2)
    return torch.where(mirrored.view(-1, *[1] * (values.dim() - 1)), flipped, values)


@torch.no_grad()
def patch_accuracies(tower: VisionTower, heads: PatchHeads, data: PatchData, batch: int = 32) -> dict[str, float]:
    """Per-patch accuracies against each patch's majority truth.

    ``category``: all patches, 10 classes; on thing patches (majority a shape): ``colour``, ``shape``
    (the shape head) and ``thing_recall`` (the category head says some shape). Chance levels:
    ``majority_baseline`` (always the commonest category) and ``shape_majority_baseline`` (always
    the commonest shape on thing patches).
    """
    tower.eval()
    heads.eval()
    predicted = [heads(tower.features(data.pixel_values[i:i + batch], [tower.config.feature_layer])[0])
                 for i in range(0, len(data), batch)]
    category, colour, shape = (torch.cat([p[k] for p in predicted]).argmax(-1) for k in range(3))
    true_category = data.categories.argmax(-1)
    things = true_category < SHAPES
    return {
        "category": _mean(category == true_category),
        "colour": _mean((colour == data.colours.argmax(-1))[things]),
        "shape": _mean((shape == true_category)[things]),
        "thing_recall": _mean((category < SHAPES)[things]),
        "majority_baseline": _mean(true_category == true_category.flatten().mode().values),
        "shape_majority_baseline": float(true_category[things].bincount(minlength=SHAPES).max()
                                         / things.sum().clamp_min(1)),
        "thing_patches": int(things.sum()),
    }


def _mean(hits: Tensor) -> float:
    return float(hits.float().mean()) if hits.numel() else float("nan")


def pretrain_vision(out: Path, *, steps: int = DEFAULTS["steps"], batch: int = DEFAULTS["batch"],
                    lr: float = DEFAULTS["lr"], seed: int = 0, world_seed: int = WORLD_SEED,
                    scenes: int = DEFAULTS["scenes"], held_out: int = DEFAULTS["held_out"],
                    image_size: int = DEFAULTS["image_size"], shape_radius: int = DEFAULTS["shape_radius"],
                    flip: bool = DEFAULTS["flip"],
                    progress: Progress | None = None) -> tuple[Path, dict[str, Any], bool]:
    """The pretrained tower's folder for these arguments: (folder, report, reused).

    Rebuilt only when an argument or this file or patches.py changes (``cached_folder``).
    """
    patch_size = TINY_VISION["patch_size"]
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch_size}")
    if not 0 < scenes <= HELD_OUT_FIRST:
        raise ValueError(f"scenes must be 1..{HELD_OUT_FIRST} (held-out scenes start at index {HELD_OUT_FIRST})")
    if steps < 1 or batch < 1 or held_out < 1 or shape_radius < 0:
        raise ValueError("steps, batch and held_out must be positive and shape_radius 0 or more")
    recipe = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "world_seed": world_seed, "scenes": scenes,
              "held_out": held_out, "image_size": image_size, "shape_radius": shape_radius, "flip": flip,
              "vision": TINY_VISION}

    def build(folder: Path) -> dict[str, Any]:
        started = time.perf_counter()
        tower, timings = tiny_tower(image_size, seed), {}
        heads = PatchHeads(tower.width)
        train = render_scenes(world_seed, range(scenes), image_size, patch_size, shape_radius, progress)
        timings["render_minutes"] = (time.perf_counter() - started) / 60
        last = fit_patch_heads(tower, heads, train, steps=steps, batch=batch, lr=lr, seed=seed, flip=flip,
                               progress=progress)
        timings["train_minutes"] = (time.perf_counter() - started) / 60 - timings["render_minutes"]
        test = render_scenes(world_seed, range(HELD_OUT_FIRST, HELD_OUT_FIRST + held_out), image_size, patch_size,
                             shape_radius, progress, "held-out scenes")
        accuracies = patch_accuracies(tower, heads, test)
        tower.model.save_pretrained(folder)
        torch.save(heads.state_dict(), folder / HEADS_FILE)
        return {"held_out": accuracies, "last_losses": last, "grid": image_size // patch_size,
                "minutes": (time.perf_counter() - started) / 60, **timings}

    return cached_folder(out, recipe, [Path(__file__), Path(patches_module.__file__)], build)
