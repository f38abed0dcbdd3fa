"""Per-patch ground truth: exact fractions over the patch rectangles a non-cropping square resize makes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from datasets_builders.sample_world.patches import (
    CATEGORIES,
    COLOURS,
    FEATURES,
    feature_matrix,
    patch_truth,
)
from datasets_builders.sample_world.scene import STUFF_COLOURS, Scene, Stuff, Thing, generate_scene

GRID = 8
SEED = 11


def _patch_pixels(scene: Scene, row: int, column: int) -> tuple[slice, slice]:
    """The whole source pixels inside patch (row, column): those a border cuts left out."""
    height, width = scene.segments.shape
    ys = slice(int(np.ceil(row * height / GRID)), int(np.floor((row + 1) * height / GRID)))
    xs = slice(int(np.ceil(column * width / GRID)), int(np.floor((column + 1) * width / GRID)))
    return ys, xs


@pytest.mark.parametrize("index", range(6))
def test_fractions_of_a_patch_sum_to_one_and_colours_to_its_thing_share(index):
    truth = patch_truth(generate_scene(SEED, index), GRID)
    assert truth.categories.shape == (GRID, GRID, len(CATEGORIES))
    assert truth.colours.shape == (GRID, GRID, len(COLOURS))
    assert truth.rgb.shape == (GRID, GRID, 3)
    np.testing.assert_allclose(truth.categories.sum(-1), 1.0, atol=1e-5)
    things = truth.categories[..., :4].sum(-1)  # the thing shapes come first
    np.testing.assert_allclose(truth.colours.sum(-1), things, atol=1e-5)
    assert truth.rgb.min() >= 0.0 and truth.rgb.max() <= 1.0


def test_whole_pixel_patches_are_block_counts():
    """With W and H multiples of the grid every patch is a pixel block: count it by hand."""
    rng = np.random.default_rng(0)
    height, width = 6 * GRID, 10 * GRID
    segments = np.where(np.arange(height)[:, None] < 20, 1, 2).astype(np.int32).repeat(width, axis=1)
    segments[5:30, 12:47] = 3  # a red square crossing patch borders
    segments[25:44, 50:71] = 4  # a blue circle's pixels, say
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    things = (Thing(3, "square", "red", (12, 5, 35, 25), 875), Thing(4, "circle", "blue", (50, 25, 21, 19), 399))
    stuff = (Stuff(1, "sky", (0, 0, width, 20), 0), Stuff(2, "sand", (0, 20, width, height - 20), 0))
    truth = patch_truth(Scene(0, image, segments, things, stuff), GRID)

    def blocks(values: np.ndarray) -> np.ndarray:  # (H, W) -> (GRID, GRID) block means
        return values.reshape(GRID, height // GRID, GRID, width // GRID).mean(axis=(1, 3))

    for segment, category in ((1, "sky"), (2, "sand"), (3, "square"), (4, "circle")):
        np.testing.assert_allclose(truth.categories[..., CATEGORIES.index(category)], blocks(segments == segment),
                                   atol=1e-6)
    np.testing.assert_allclose(truth.colours[..., COLOURS.index("red")], blocks(segments == 3), atol=1e-6)
    np.testing.assert_allclose(truth.colours[..., COLOURS.index("blue")], blocks(segments == 4), atol=1e-6)
    for channel in range(3):
        np.testing.assert_allclose(truth.rgb[..., channel], blocks(np.asarray(image)[..., channel] / 255.0), atol=1e-6)


def test_patches_cutting_pixels_count_them_by_area():
    """Repeating each pixel GRID x GRID times puts every patch border on a whole pixel: count it there."""
    rng = np.random.default_rng(1)
    height, width = 29, 37  # no multiples of the grid: borders cut pixels
    segments = rng.integers(1, 5, (height, width)).astype(np.int32)
    box = (0, 0, width, height)  # boxes and areas are not read
    things = (Thing(3, "triangle", "yellow", box, 0), Thing(4, "diamond", "black", box, 0))
    stuff = (Stuff(1, "wall", box, 0), Stuff(2, "floor", box, 0))
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    truth = patch_truth(Scene(0, image, segments, things, stuff), GRID)
    fine = segments.repeat(GRID, axis=0).repeat(GRID, axis=1)  # patch (r, c) = rows r*29..(r+1)*29-1 here
    for segment, category in ((1, "wall"), (2, "floor"), (3, "triangle"), (4, "diamond")):
        counted = (fine == segment).reshape(GRID, height, GRID, width).mean(axis=(1, 3))
        np.testing.assert_allclose(truth.categories[..., CATEGORIES.index(category)], counted, atol=1e-6)
    counted = (fine == 4).reshape(GRID, height, GRID, width).mean(axis=(1, 3))
    np.testing.assert_allclose(truth.colours[..., COLOURS.index("black")], counted, atol=1e-6)


def test_a_patch_inside_a_square_is_that_square_and_its_colour():
    checked = 0
    for index in range(40):
        if checked >= 3:
            break
        scene = generate_scene(SEED, index)
        height, width = scene.segments.shape
        truth = patch_truth(scene, GRID)
        for thing in (t for t in scene.things if t.shape == "square"):
            x, y, w, h = thing.bbox
            for row in range(GRID):
                for column in range(GRID):
                    inside_box = (x <= column * width / GRID and (column + 1) * width / GRID <= x + w
                                  and y <= row * height / GRID and (row + 1) * height / GRID <= y + h)
                    ys, xs = _patch_pixels(scene, row, column)
                    if not inside_box or not (scene.segments[ys, xs] == thing.segment_id).all():
                        continue  # not inside, or partly covered by a later object
                    assert truth.categories[row, column, CATEGORIES.index("square")] > 0.99, (index, row, column)
                    assert truth.colours[row, column, COLOURS.index(thing.colour)] > 0.99, (index, row, column)
                    checked += 1
    assert checked >= 3  # the seed has squares big enough to hold whole patches


def test_outdoor_scene_has_sky_on_top_and_ground_below():
    scene = next(s for s in (generate_scene(SEED, i) for i in range(20)) if s.stuff[0].category == "sky")
    ground = scene.stuff[1].category
    truth = patch_truth(scene, GRID)
    sky, below = truth.categories[..., CATEGORIES.index("sky")], truth.categories[..., CATEGORIES.index(ground)]
    things = truth.categories[..., :4].sum(-1)
    # The horizon lies between 35 % and 60 % of the height (give or take its 6 px wave): the top row
    # is sky and objects only, the bottom row ground and objects only.
    np.testing.assert_allclose(sky[0] + things[0], 1.0, atol=1e-5)
    np.testing.assert_allclose(below[-1] + things[-1], 1.0, atol=1e-5)
    assert (below[0] == 0).all() and (sky[-1] == 0).all()
    clear_sky = sky[0] > 0.999
    assert clear_sky.any()
    expected = np.array(STUFF_COLOURS["sky"]) / 255.0
    assert np.abs(truth.rgb[0][clear_sky] - expected).max() < 0.08  # texture and light from above aside


def test_same_scene_same_truth_and_the_feature_layout():
    first, second = patch_truth(generate_scene(SEED, 3), GRID), patch_truth(generate_scene(SEED, 3), GRID)
    for a, b in ((first.categories, second.categories), (first.colours, second.colours), (first.rgb, second.rgb)):
        assert np.array_equal(a, b)
    features = feature_matrix(first)
    assert features.shape == (GRID * GRID, len(FEATURES)) == (64, 20) and features.dtype == np.float32
    row, column = 5, 2  # raster order, as a ViT's patch tokens
    assert np.array_equal(features[row * GRID + column, :len(CATEGORIES)], first.categories[row, column])
    assert np.array_equal(features[row * GRID + column, -3:], first.rgb[row, column])
    assert not np.array_equal(first.categories, patch_truth(generate_scene(SEED, 4), GRID).categories)
