"""MiniGPT-v2 box strings: truncated percent corners, ``<delim>`` joins, grounded spans, and errors."""

from __future__ import annotations

import random

import pytest

from datasets_builders.formats.boxes import (
    BoxError,
    PixelBox,
    format_box,
    format_boxes,
    format_phrase,
    normalise,
    parse_box,
    parse_boxes,
    parse_grounded,
    strip_grounding,
)

GROUNDED = "<p>two men</p> {<47><25><65><67>}<delim>{<59><22><78><74>} and <p>a dog</p> {<1><2><3><4>}"


def test_the_spec_worked_example_gives_the_repo_string():
    # RefCOCO eval file of MiniGPT-v2: image 640x428, COCO bbox [468.3, 0.91, 171.7, 116.12].
    box = PixelBox.from_xywh([468.3, 0.91, 171.7, 116.12])
    assert format_box(box, 640, 428) == "{<73><0><100><27>}"


def test_corners_are_truncated_never_rounded():
    box = PixelBox(9.99, 19.99, 509.99, 999.99)  # 0.999, 1.999, 50.999, 99.999 percent
    assert normalise(box, 1000, 1000) == (0, 1, 50, 99)
    assert format_box(box, 1000, 1000) == "{<0><1><50><99>}"


def test_100_appears_only_when_a_box_reaches_the_right_or_bottom_edge():
    assert normalise(PixelBox(0, 0, 639.99, 427.99), 640, 428) == (0, 0, 99, 99)
    assert normalise(PixelBox(0, 0, 640, 428), 640, 428) == (0, 0, 100, 100)
    assert normalise(PixelBox(0, 0, 640.0005, 428), 640, 428) == (0, 0, 100, 100)  # float noise past the edge
    rng = random.Random(7)
    for _ in range(3000):
        w, h = rng.randint(1, 2000), rng.randint(1, 2000)
        x0, y0 = rng.uniform(0, w - 1e-3), rng.uniform(0, h - 1e-3)
        x1 = rng.choice([w, rng.uniform(x0 + 1e-4, w)])
        y1 = rng.choice([h, rng.uniform(y0 + 1e-4, h)])
        corners = normalise(PixelBox(x0, y0, x1, y1), w, h)
        assert corners[0] < 100 and corners[1] < 100
        assert (corners[2] == 100) == (x1 == w) and (corners[3] == 100) == (y1 == h)


def test_parse_inverts_format_over_many_random_boxes():
    rng = random.Random(11)
    for _ in range(2000):
        w, h = rng.randint(1, 4000), rng.randint(1, 4000)
        x0, x1 = sorted(rng.uniform(0, w) for _ in range(2))
        y0, y1 = sorted(rng.uniform(0, h) for _ in range(2))
        if x1 <= x0 or y1 <= y0:
            continue
        box = PixelBox(x0, y0, x1, y1)
        assert parse_box(format_box(box, w, h)) == normalise(box, w, h)
    boxes = [PixelBox(1, 2, 30, 40), PixelBox(50, 10, 100, 100)]
    assert parse_boxes(format_boxes(boxes, 100, 100)) == [(1, 2, 30, 40), (50, 10, 100, 100)]


def test_xywh_and_xyxy_views_agree():
    box = PixelBox.from_xywh([10, 20, 30, 40])
    assert box == PixelBox(10.0, 20.0, 40.0, 60.0)
    assert (box.xywh(), box.xyxy()) == ([10.0, 20.0, 30.0, 40.0], [10.0, 20.0, 40.0, 60.0])


def test_boxes_of_one_phrase_join_with_delim_and_no_spaces():
    men = [PixelBox(94, 25, 130, 67), PixelBox(118, 22, 156, 74)]  # on a 200x100 image
    assert format_boxes(men, 200, 100) == "{<47><25><65><67>}<delim>{<59><22><78><74>}"
    assert format_phrase("two men", men, 200, 100) == "<p>two men</p> {<47><25><65><67>}<delim>{<59><22><78><74>}"
    assert format_phrase("a dog", [PixelBox(1, 2, 3, 4)], 100, 100) == "<p>a dog</p> {<1><2><3><4>}"


def test_grounded_text_parses_into_phrases_with_their_boxes():
    assert parse_grounded(GROUNDED) == [("two men", [(47, 25, 65, 67), (59, 22, 78, 74)]), ("a dog", [(1, 2, 3, 4)])]
    assert strip_grounding(GROUNDED) == "two men and a dog"
    assert parse_grounded("no phrases here {<1><2><3><4>}") == []


def test_a_zero_area_box_is_an_error():
    for box in (PixelBox(5, 5, 5, 10), PixelBox(5, 5, 10, 5), PixelBox(8, 5, 4, 10)):
        with pytest.raises(BoxError, match="has zero or negative area"):
            box.check(20, 20)
        with pytest.raises(BoxError):
            format_box(box, 20, 20)


def test_a_box_outside_its_image_is_an_error_naming_the_size():
    with pytest.raises(BoxError, match=r"^box \[0, 0, 11, 5\] \(x0, y0, x1, y1\) lies outside the 10x10 image$"):
        PixelBox(0, 0, 11, 5).check(10, 10)
    for box in (PixelBox(-1, 0, 5, 5), PixelBox(0, -0.5, 5, 5), PixelBox(0, 0, 5, 10.01)):
        with pytest.raises(BoxError, match="lies outside the 10x10 image"):
            format_box(box, 10, 10)
    assert PixelBox(0, 0, 10, 10).check(10, 10) == PixelBox(0, 0, 10, 10)


def test_a_phrase_without_boxes_is_an_error():
    with pytest.raises(BoxError, match="at least one box"):
        format_boxes([], 10, 10)


@pytest.mark.parametrize("text", [
    "{<1><2><3>}", "{<1> <2><3><4>}", "<1><2><3><4>", "{<1><2><3><4>} ", "{<-1><2><3><4>}", "{<1><2><3><1000>}",
    "{<a><2><3><4>}", "{1,2,3,4}", "", "{<1><2><3><4>}<delim>",
])
def test_malformed_box_strings_are_errors(text):
    with pytest.raises(BoxError, match="not a box string"):
        parse_box(text)


@pytest.mark.parametrize("text", ["{<0><0><101><50>}", "{<0><0><50><999>}", "{<50><0><10><50>}", "{<0><60><10><50>}"])
def test_corners_over_100_or_inverted_are_errors(text):
    with pytest.raises(BoxError, match="corners outside 0..100 or inverted"):
        parse_box(text)


def test_delim_lists_fail_on_any_bad_member():
    with pytest.raises(BoxError, match="not a box string"):
        parse_boxes("{<1><2><3><4>}<delim>{<1><2><3>}")
    with pytest.raises(BoxError):
        parse_boxes("{<1><2><3><4>} <delim> {<5><6><7><8>}")
