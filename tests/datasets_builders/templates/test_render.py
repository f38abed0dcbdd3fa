"""Template pools and render(): the spec's exact strings, a per-key choice, and each task's turns."""

from __future__ import annotations

from collections import Counter

import pytest

from datasets_builders.formats.schema import Turn
from datasets_builders.templates.render import TASKS, TemplateError, choose, pools, render

# minigptv2-data-spec.md section 3, verbatim.
SPEC_POOLS = {
    "vqa": ("[vqa] {}", "[vqa] Based on the image, respond to this question with a short answer: {}"),
    "refer": ("[refer] {}", "[refer] give me the location of {}", "[refer] where is {} ?",
              "[refer] from this image, tell me the location of {}", "[refer] the location of {} is",
              "[refer] could you tell me the location for {} ?", "[refer] where can I locate the {} ?"),
    "identify": ("[identify] {}", "[identify] what object is in this location {}",
                 "[identify] identify the object present at this location {}", "[identify] what is it in {}",
                 "[identify] describe this object in {}", "[identify] this {} is", "[identify] the object in {} is"),
    "grounding": ("[grounding] please describe this image in details",
                  "[grounding] describe this image as detailed as possible",
                  "[grounding] summarize this image in details",
                  "[grounding] give a thorough description of what you see in this image"),
    "detection-caption": ("[detection] {}",),
    "detection-phrase": ("[detection] {}",),
}
SPEC_CAPTIONS = ("Briefly describe this image.", "A short image caption:", "A photo of ",
                 "Summarize this image in a few words.",
                 "Use a few words to illustrate what is happening in the picture.")

BUS = {"expression": "the red bus", "box": [468.3, 0.91, 640.0, 117.03]}  # the spec's 640x428 example
MEN_AND_DOG = {
    "caption": "two men and a dog",  # on a 200x100 image; phrases deliberately out of order
    "phrases": [{"start": 12, "end": 17, "boxes": [[2, 2, 6, 4]]},
                {"start": 0, "end": 7, "boxes": [[94, 25, 130, 67], [118, 22, 156, 74]]}],
}
MEN = "<p>two men</p> {<47><25><65><67>}<delim>{<59><22><78><74>}"
DOG = "<p>a dog</p> {<1><2><3><4>}"
CRAYON = {
    "segments": [{"class": "person", "number": 1, "box": [0, 0, 32, 48]},
                 {"class": "person", "number": 2, "box": [32, 12, 48, 48]},
                 {"class": "sky", "number": 1, "box": [0, 0, 64, 16]}],
    "select_class": "person",
}


def pairs(turns: tuple[Turn, ...]) -> list[tuple[str, str]]:
    assert [t.role for t in turns] == ["user", "assistant"] * (len(turns) // 2)
    return [(turns[i].content, turns[i + 1].content) for i in range(0, len(turns), 2)]


def test_pools_equal_the_spec_strings_and_sizes():
    got = pools()
    for task, expected in SPEC_POOLS.items():
        assert got[task] == expected, task
    assert {task: len(got[task]) for task in ("refer", "identify", "grounding", "vqa", "detection-caption",
                                               "detection-phrase")} == {
        "refer": 7, "identify": 7, "grounding": 4, "vqa": 2, "detection-caption": 1, "detection-phrase": 1}


def test_caption_templates_are_spec_quotes_with_the_identifier_in_front():
    assert pools()["caption"] == tuple(f"[caption] {c}" for c in SPEC_CAPTIONS)


def test_the_choice_is_a_pure_function_of_task_and_key():
    for key in ("refcoco-123-refer", "x", "coco-000000033471-0"):
        assert choose("refer", key) == choose("refer", key)
        twice = [render("refer", BUS, key=key, width=640, height=428) for _ in range(2)]
        assert twice[0] == twice[1]


def test_the_choice_spreads_over_the_whole_pool_across_keys():
    for task, size in (("refer", 7), ("identify", 7), ("grounding", 4), ("vqa", 2)):
        counts = Counter(choose(task, f"sample-{i:05d}") for i in range(3500))
        assert sorted(counts) == list(range(size)), task
        expected = 3500 / size
        assert all(0.8 * expected < n < 1.2 * expected for n in counts.values()), (task, counts)


def test_the_rendered_template_is_the_chosen_one():
    for i in range(30):
        key = f"k{i}"
        [(question, _)] = pairs(render("refer", BUS, key=key, width=640, height=428))
        assert question == SPEC_POOLS["refer"][choose("refer", key)].format("the red bus")


def test_a_template_override_wins_over_the_key_and_wraps_around_the_pool():
    [(q3, _)] = pairs(render("refer", BUS, key="any", width=640, height=428, template=3))
    [(q10, _)] = pairs(render("refer", BUS, key="other", width=640, height=428, template=10))
    assert q3 == q10 == "[refer] from this image, tell me the location of the red bus"


@pytest.mark.parametrize(("task", "fields", "size", "template", "expected"), [
    ("caption", {"caption": "a red bus on a street"}, (0, 0), 0,
     [("[caption] Briefly describe this image.", "a red bus on a street")]),
    ("vqa", {"question": "what color is the bus?", "answer": "red"}, (0, 0), 1,
     [("[vqa] Based on the image, respond to this question with a short answer: what color is the bus?", "red")]),
    ("refer", BUS, (640, 428), 2, [("[refer] where is the red bus ?", "{<73><0><100><27>}")]),
    ("identify", BUS, (640, 428), 5, [("[identify] this {<73><0><100><27>} is", "the red bus")]),
    ("grounding", MEN_AND_DOG, (200, 100), 3,
     [("[grounding] give a thorough description of what you see in this image", f"{MEN} and {DOG}")]),
    ("detection-caption", MEN_AND_DOG, (200, 100), 0, [("[detection] two men and a dog", f"{MEN}, {DOG}")]),
    ("detection-phrase", {"phrase": "a dog", "boxes": [[2, 2, 6, 4]]}, (200, 100), 0, [("[detection] a dog", DOG)]),
    ("crayon", CRAYON, (64, 48), 0, [
        ("Provide multiple object names with their numbering index in the image.", "#1 person, #2 person, #1 sky"),
        ("Provide multiple object names with their numbering index and the objects' bounding box coordinates "
         "in this image.",
         "Sure, it is (#1 person) [0.00, 0.00, 0.50, 1.00], (#2 person) [0.50, 0.25, 0.75, 1.00], "
         "(#1 sky) [0.00, 0.00, 1.00, 0.33]."),
        ("Provide multiple bounding box coordinates for person in the image.",
         "Sure, it is (#1 person) [0.00, 0.00, 0.50, 1.00], (#2 person) [0.50, 0.25, 0.75, 1.00]."),
    ]),
    ("crayon", {"segments": [], "select_class": ""}, (64, 48), 0,
     [("Provide multiple object names with their numbering index in the image.", "None.")]),
])
def test_each_task_renders_the_hand_worked_turns(task, fields, size, template, expected):
    width, height = size
    assert pairs(render(task, fields, key="k", width=width, height=height, template=template)) == expected


def test_every_task_the_renderer_knows_has_its_pools():
    assert set(TASKS) == {"caption", "vqa", "refer", "identify", "grounding", "detection-caption",
                          "detection-phrase", "crayon"}
    assert {"crayon-objects", "crayon-boxes", "crayon-class"} <= set(pools())


def test_an_unknown_task_is_a_template_error():
    with pytest.raises(TemplateError, match="no renderer for task 'segmentation'"):
        render("segmentation", {}, key="k")
    with pytest.raises(TemplateError, match="no pool for 'segmentation'"):
        choose("segmentation", "k")
