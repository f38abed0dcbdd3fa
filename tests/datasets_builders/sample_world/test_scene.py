"""Generated scenes: deterministic, and their ground truth is exact for the rendered picture."""

from __future__ import annotations

import numpy as np
import pytest

from datasets_builders.sample_world.scene import MIN_VISIBLE, THING_COLOURS, caption, generate_scene


@pytest.mark.parametrize("index", range(12))
def test_ground_truth_is_measured_on_the_final_picture(index):
    scene = generate_scene(5, index)
    width, height = scene.size
    assert scene.segments.shape == (height, width)
    segments = {*(t.segment_id for t in scene.things), *(s.segment_id for s in scene.stuff)}
    assert set(np.unique(scene.segments).tolist()) == segments  # every pixel is in a listed segment
    assert sum(t.area for t in scene.things) + sum(s.area for s in scene.stuff) == width * height
    pixels = np.asarray(scene.image, dtype=np.int16)
    for thing in scene.things:
        x, y, w, h = thing.bbox
        mask = scene.segments == thing.segment_id
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1 - x, ys.max() + 1 - y) == (x, y, w, h)
        assert mask.sum() == thing.area
        # The pixels of the object really have its colour (texture noise aside).
        mean = pixels[mask].mean(axis=0)
        assert np.abs(mean - np.array(THING_COLOURS[thing.colour]) * 1.0).max() < 25, (thing, mean)


def test_objects_stay_visible_and_distinct():
    for index in range(40):
        scene = generate_scene(1, index)
        for thing in scene.things:
            x, y, w, h = thing.bbox
            assert thing.area >= MIN_VISIBLE * 0.45 * w * h  # a triangle fills half its box
        assert 1 <= len(scene.things) <= 4


def test_same_seed_and_index_give_the_same_scene_regardless_of_order():
    a = [generate_scene(3, i).jpeg() for i in (0, 1, 2)]
    b = [generate_scene(3, i).jpeg() for i in (2, 1, 0)][::-1]
    assert a == b
    assert generate_scene(4, 0).jpeg() != a[0]


def test_caption_names_every_object_left_to_right_and_the_setting():
    for index in range(20):
        scene = generate_scene(9, index)
        text = caption(scene)
        names = [t.name for t in sorted(scene.things, key=lambda t: t.bbox[0])]
        positions = [text.index(name) for name in names]
        assert positions == sorted(positions), text
        categories = {s.category for s in scene.stuff}
        assert ("under a blue sky" in text) == ("sky" in categories)
        assert ("in a room" in text) == ("wall" in categories)
