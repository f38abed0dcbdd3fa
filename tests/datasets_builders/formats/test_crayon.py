"""Crayon maps: the run-length implementation against a plain per-segment reference, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from datasets_builders.formats.crayon import (
    Categories,
    CrayonError,
    crayon_map,
    decode_ids,
    read_crayon,
    text_name,
)

CATEGORIES = [  # non-contiguous ids, listed out of order on purpose
    {"id": 184, "name": "tree-merged", "isthing": 0},
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 3, "name": "car", "isthing": 1},
    {"id": 110, "name": "sky-other-merged", "isthing": 0},
    {"id": 90, "name": "toothbrush", "isthing": 1},
]
SORTED_IDS = [1, 3, 90, 110, 184]


def reference(ids: np.ndarray, segments_info: list[dict], max_instances: int):
    """One boolean mask per segment, in segment-id order: slow and obviously right."""
    semantic = np.zeros(ids.shape, np.uint8)
    numbering = np.zeros(ids.shape, np.uint8)
    counts: dict[int, int] = {}
    rows = []
    for s in sorted(segments_info, key=lambda s: s["id"]):
        mask = ids == s["id"]
        counts[s["category_id"]] = counts.get(s["category_id"], 0) + 1
        number = min(counts[s["category_id"]], max_instances)
        semantic[mask] = SORTED_IDS.index(s["category_id"]) + 1
        numbering[mask] = number
        ys, xs = np.nonzero(mask)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        rows.append((s["id"], number, int(mask.sum()), bbox))
    return semantic, numbering, rows


def random_map(rng: np.random.Generator, height: int, width: int, n_segments: int, blocky: bool):
    """An id map whose ids collide in their low bytes (R) or middle bytes (G), with void pixels."""
    low = int(rng.integers(1, 256))
    pool = {low, low + 256, low + 2 * 256, low + 65536, low + 256 * 7 + 65536 * 3, 256, 65536, 2**24 - 1}
    while len(pool) < n_segments:
        pool.add(int(rng.integers(1, 2**24)))
    seg_ids = np.array(sorted(pool)[:n_segments] + [0], dtype=np.uint32)  # 0 = void
    if blocky:  # long runs, like real panoptic maps
        ids = np.zeros((height, width), np.uint32)
        for _ in range(4 * n_segments):
            y, x = rng.integers(0, height), rng.integers(0, width)
            ids[y:y + rng.integers(1, height), x:x + rng.integers(1, width)] = rng.choice(seg_ids)
    else:  # runs of length ~1: the worst case for run-length coding
        ids = rng.choice(seg_ids, size=(height, width))
    present = [int(v) for v in np.unique(ids) if v != 0]
    cats = rng.choice(SORTED_IDS, size=len(present))
    info = [{"id": sid, "category_id": int(c), "iscrowd": 0} for sid, c in zip(present, cats)]
    rng.shuffle(info)  # segments_info order must not matter
    return ids, info


def encode(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("seed", range(12))
def test_random_maps_agree_with_the_per_segment_reference(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    ids, info = random_map(rng, height, width, int(rng.integers(1, 60)), blocky=seed % 2 == 0)
    max_instances = int(rng.integers(1, 6)) if seed % 3 == 0 else 20
    got = crayon_map(ids, info, Categories.from_coco(CATEGORIES), max_instances)
    semantic, numbering, rows = reference(ids, info, max_instances)
    np.testing.assert_array_equal(got.semantic, semantic)
    np.testing.assert_array_equal(got.numbering, numbering)
    assert [(s.id, s.number, s.area, s.bbox) for s in got.segments] == rows
    per_class = [s["category_id"] for s in info]
    assert got.clamped == sum(max(0, per_class.count(c) - max_instances) for c in SORTED_IDS)
    assert [s.semantic for s in got.segments] == [SORTED_IDS.index(s.category_id) + 1 for s in got.segments]


def test_many_segments_with_colliding_low_bits_on_a_large_map():
    rng = np.random.default_rng(7)
    ids, info = random_map(rng, 300, 200, 250, blocky=False)
    got = crayon_map(ids, info, Categories.from_coco(CATEGORIES), 20)
    semantic, numbering, rows = reference(ids, info, 20)
    np.testing.assert_array_equal(got.semantic, semantic)
    np.testing.assert_array_equal(got.numbering, numbering)
    assert [(s.id, s.number, s.area, s.bbox) for s in got.segments] == rows


def test_json_area_and_bbox_are_accepted_when_they_match_the_png():
    rng = np.random.default_rng(3)
    ids, info = random_map(rng, 25, 31, 12, blocky=True)
    _, _, rows = reference(ids, info, 20)
    geometry = {sid: (area, bbox) for sid, _, area, bbox in rows}
    for s in info:
        s["area"], s["bbox"] = geometry[s["id"]][0], list(geometry[s["id"]][1])
    assert len(crayon_map(ids, info, Categories.from_coco(CATEGORIES)).segments) == len(info)


def test_a_hand_checked_map_and_its_png_round_trip():
    ids = np.array([[0, 0, 300, 300, 7, 7],
                    [5, 5, 300, 300, 7, 7],
                    [5, 5, 9, 9, 7, 7],
                    [9, 9, 9, 9, 7, 7]], np.uint32)
    info = [{"id": 300, "category_id": 1}, {"id": 9, "category_id": 3}, {"id": 5, "category_id": 1},
            {"id": 7, "category_id": 184}]
    got = crayon_map(decode_ids(encode(ids)), info, Categories.from_coco(CATEGORIES))
    assert got.semantic.tolist() == [[0, 0, 1, 1, 5, 5], [1, 1, 1, 1, 5, 5], [1, 1, 2, 2, 5, 5], [2, 2, 2, 2, 5, 5]]
    assert got.numbering.tolist() == [[0, 0, 2, 2, 1, 1], [1, 1, 2, 2, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert [s.to_json() for s in got.segments][0] == {
        "id": 5, "category_id": 1, "class": "person", "semantic": 1, "number": 1, "box": [0, 1, 2, 3],
        "area": 4, "iscrowd": False, "isthing": True}
    assert [(s.name, s.number, s.bbox, s.area) for s in got.segments] == [
        ("person", 1, (0, 1, 2, 2), 4), ("tree", 1, (4, 0, 2, 4), 8), ("car", 1, (0, 2, 4, 2), 6),
        ("person", 2, (2, 0, 2, 2), 4)]
    semantic, numbering = read_crayon(got.png())
    np.testing.assert_array_equal(semantic, got.semantic)
    np.testing.assert_array_equal(numbering, got.numbering)


def test_a_segment_that_wraps_from_one_row_to_the_next_is_measured_per_row():
    ids = np.array([[1, 2, 2], [2, 2, 1]], np.uint32)  # id 2 runs across the row break in raster order
    got = crayon_map(ids, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}], Categories.from_coco(CATEGORIES))
    assert [(s.id, s.area, s.bbox) for s in got.segments] == [(1, 2, (0, 0, 3, 2)), (2, 4, (0, 0, 3, 2))]


def test_instances_past_the_maximum_keep_the_maximum_number_and_are_counted():
    ids = np.arange(1, 26, dtype=np.uint32).reshape(1, 25)
    info = [{"id": i, "category_id": 1} for i in range(1, 26)]
    got = crayon_map(ids, info, Categories.from_coco(CATEGORIES))
    assert got.numbering.tolist() == [list(range(1, 21)) + [20] * 5]
    assert got.clamped == 5


def test_an_image_without_segments_gives_empty_maps():
    got = crayon_map(np.zeros((3, 4), np.uint32), [], Categories.from_coco(CATEGORIES))
    assert got.segments == () and not got.semantic.any() and not got.numbering.any()


def test_panoptic_ids_decode_from_all_three_channels():
    png = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [255, 255, 255]]], np.uint8)
    assert decode_ids(png).tolist() == [[1, 256, 65536, 2**24 - 1]]


def test_coco_names_lose_their_merged_other_stuff_suffixes():
    assert [text_name(n) for n in ("sky-other-merged", "wall-other-merged", "window-blind", "playingfield",
                                   "tree-merged", "sand", "floor-wood")] == [
        "sky", "wall", "window blind", "playingfield", "tree", "sand", "floor wood"]


@pytest.mark.parametrize(("ids", "info", "message"), [
    ([[1, 8]], [{"id": 1, "category_id": 1}], "the PNG has segment ids missing from segments_info: 8"),
    ([[1, 1]], [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}],
     "segment 2 is listed in segments_info but has no pixels in the PNG"),
    ([[1, 1]], [{"id": 1, "category_id": 1, "area": 3}], "segment 1: area 3 in the JSON but 2 pixels in the PNG"),
    ([[1, 1]], [{"id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
     "segment 1: bbox [0, 0, 1, 1] in the JSON but [0, 0, 2, 1] in the PNG"),
    ([[1, 1]], [{"id": 1, "category_id": 2}], "category id 2 is not among the dataset's categories"),
    ([[1, 1]], [{"id": 1, "category_id": 1}, {"id": 1, "category_id": 3}], "segments_info lists a segment id twice"),
    ([[0, 1]], [{"id": 0, "category_id": 1}, {"id": 1, "category_id": 3}], "(or lists id 0)"),
])
def test_disagreements_between_png_and_json_are_refused_with_the_segment_named(ids, info, message):
    with pytest.raises(CrayonError) as e:
        crayon_map(np.array(ids, np.uint32), info, Categories.from_coco(CATEGORIES))
    assert message in str(e.value)


def test_categories_refuse_a_repeated_id_and_a_png_that_is_not_rgb():
    with pytest.raises(CrayonError, match="same id twice"):
        Categories.from_coco([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
    with pytest.raises(CrayonError, match="must be RGB"):
        decode_ids(np.zeros((2, 2), np.uint8))
