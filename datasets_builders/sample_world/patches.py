"""Per-patch ground truth of a sample-world scene: what an ideal vision tower would see in each patch.

Diagnostics need to tell "are the tower's features good" from "does the LLM learn to look"
(docs/models.md, "The ideal tower"). A model resizes a picture to a square without cropping,
so patch (r, c) of a ``grid`` x ``grid`` patch grid covers the source rectangle
``[c W / grid, (c + 1) W / grid) x [r H / grid, (r + 1) H / grid)``. ``patch_truth`` measures
each patch on the scene's exact segment map, pixels cut by a patch border counting by the share
of their area inside it, so the fractions are exact for that rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets_builders.sample_world.scene import STUFF_COLOURS, THING_COLOURS, THING_SHAPES, Scene

CATEGORIES: tuple[str, ...] = (*THING_SHAPES, *STUFF_COLOURS)  #: the 4 thing shapes, then the 6 stuff categories
COLOURS: tuple[str, ...] = tuple(THING_COLOURS)  #: the 7 thing colours; stuff has none
RGB: tuple[str, ...] = ("mean_red", "mean_green", "mean_blue")
#: the columns of ``feature_matrix``: category fractions, colour fractions, mean RGB (F = 20)
FEATURES: tuple[str, ...] = (*CATEGORIES, *COLOURS, *RGB)


@dataclass(frozen=True)
class PatchTruth:
    """The ground truth of each patch of a ``grid`` x ``grid`` square resize, indexed [row, column]."""

    categories: np.ndarray  #: (grid, grid, len(CATEGORIES)) float32 pixel fractions; each patch sums to 1
    colours: np.ndarray  #: (grid, grid, len(COLOURS)) float32 fractions of the whole patch; sums to its thing share
    rgb: np.ndarray  #: (grid, grid, 3) float32 mean RGB of the rendered picture, in [0, 1]

    @property
    def grid(self) -> int:
        return self.categories.shape[0]


def patch_truth(scene: Scene, grid: int) -> PatchTruth:
    """The category and colour fractions and the mean colour of every patch of ``scene``."""
    if grid < 1:
        raise ValueError(f"a patch grid needs at least one patch per side, got grid={grid}")
    height, width = scene.segments.shape
    ids, category_of, colour_of = _segment_tables(scene)
    channels = np.concatenate([  # (H, W, segments + 3): one indicator per segment, then the picture
        (scene.segments[..., None] == ids).astype(np.float64),
        np.asarray(scene.image.convert("RGB"), dtype=np.float64) / 255.0,
    ], axis=-1)
    rows, columns = _coverage(height, grid), _coverage(width, grid)
    # (grid, H) x (H, W, K) x (grid, W) -> (grid, grid, K): area-weighted sums, then means per patch
    by_row = np.tensordot(rows, channels, axes=(1, 0))  # (grid, W, K)
    sums = np.tensordot(by_row, columns, axes=(1, 1)).transpose(0, 2, 1)
    means = sums / (height / grid * width / grid)
    segments, rgb = means[..., :len(ids)], means[..., len(ids):]
    categories, colours = segments @ category_of, segments @ colour_of
    return PatchTruth(categories.astype(np.float32), colours.astype(np.float32), rgb.astype(np.float32))


def feature_matrix(truth: PatchTruth) -> np.ndarray:
    """(grid * grid, F) float32, patches in raster order (as a ViT's tokens), columns named by FEATURES."""
    features = np.concatenate([truth.categories, truth.colours, truth.rgb], axis=-1)
    return features.reshape(truth.grid * truth.grid, len(FEATURES)).astype(np.float32)


def _segment_tables(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scene's segment ids, and (segments, CATEGORIES) and (segments, COLOURS) 0/1 membership tables
    (a stuff segment's colour row is all zeros: stuff has no thing colour)."""
    ids = np.unique(scene.segments)
    category_of, colour_of = np.zeros((len(ids), len(CATEGORIES))), np.zeros((len(ids), len(COLOURS)))
    row_of = {int(segment): row for row, segment in enumerate(ids)}
    for thing in scene.things:
        category_of[row_of[thing.segment_id], CATEGORIES.index(thing.shape)] = 1.0
        colour_of[row_of[thing.segment_id], COLOURS.index(thing.colour)] = 1.0
    for stuff in scene.stuff:
        if stuff.segment_id in row_of:
            category_of[row_of[stuff.segment_id], CATEGORIES.index(stuff.category)] = 1.0
    if (category_of.sum(axis=1) != 1).any():
        raise ValueError(f"scene {scene.index}: its segment map holds a segment listed neither as thing nor stuff")
    return ids, category_of, colour_of


def _coverage(pixels: int, grid: int) -> np.ndarray:
    """(grid, pixels): how much of pixel [i, i + 1) lies in patch [p * pixels / grid, (p + 1) * pixels / grid)."""
    edges = np.arange(grid + 1) * pixels / grid
    starts, ends = np.arange(pixels), np.arange(1, pixels + 1)
    return np.clip(np.minimum(ends, edges[1:, None]) - np.maximum(starts, edges[:-1, None]), 0.0, None)
