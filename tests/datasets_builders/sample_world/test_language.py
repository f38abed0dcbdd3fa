"""Text made from scenes is true of them, checked by an independent reader (``truth.py``)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from datasets_builders.sample_world import unnatural_instructions
from datasets_builders.sample_world.language import (
    Mention,
    captions,
    centre,
    detailed_description,
    entity_sentences,
    referring_expressions,
    region,
)
from datasets_builders.sample_world.questions import conversation, reasoning, vqa_pairs
from datasets_builders.sample_world.scene import THING_COLOURS, generate_scene
from tests.datasets_builders.sample_world.truth import (
    background_is_true,
    check_answer,
    count_of,
    denotes,
    is_outdoor,
    the_one,
)

SCENES = [generate_scene(11, i) for i in range(150)]


def rng(index: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([11, index, salt])


def test_every_referring_expression_fits_exactly_its_object():
    things = referred = 0
    for scene in SCENES:
        for thing in scene.things:
            expressions = referring_expressions(scene, thing)
            things += 1
            referred += bool(expressions)
            for expression in expressions:
                assert denotes(scene, expression) == [thing], (scene.index, expression)
    assert referred >= 0.97 * things  # nearly every object can be singled out


def test_a_spatial_word_is_used_only_when_the_difference_is_clear():
    for scene in SCENES:
        width, height = scene.size
        for thing in scene.things:
            for expression in referring_expressions(scene, thing):
                words = expression.split()
                same = [  # the other objects the expression's colour and shape words also fit
                    t for t in scene.things if t is not thing
                    and (thing.colour not in words or t.colour == thing.colour)
                    and (thing.shape not in words or t.shape == thing.shape)
                ]
                if "left" in words or "right" in words:
                    assert all(abs(centre(t)[0] - centre(thing)[0]) >= 0.05 * width for t in same), expression
                if "top" in words or "bottom" in words:
                    assert all(abs(centre(t)[1] - centre(thing)[1]) >= 0.05 * height for t in same), expression
                if "biggest" in words or "largest" in words:
                    assert all(thing.area >= 1.25 * t.area for t in same), expression
                if "smallest" in words:
                    assert all(1.25 * thing.area <= t.area for t in same), expression


def test_captions_are_distinct_sentences_naming_every_object():
    for scene in SCENES:
        texts = captions(scene, rng(scene.index, 1))
        assert len(set(texts)) == 5
        for text in texts:
            assert text[0].isupper() and text.endswith("."), text
            assert background_is_true(scene, text), text
            for thing in scene.things:
                wanted = sum(t.name == thing.name for t in scene.things)
                assert text.count(thing.name) >= wanted, (text, thing.name)


def test_vqa_answers_are_true_and_both_yes_and_no_occur():
    answers = set()
    for scene in SCENES:
        pairs = vqa_pairs(scene, rng(scene.index, 4))
        assert 3 <= len(pairs) <= 5
        for qa in pairs:
            check_answer(scene, qa.question, qa.answer)
            assert qa.answer_type == {"yes": "yes/no", "no": "yes/no"}.get(qa.answer, qa.answer_type)
            assert qa.question.lower().startswith(qa.question_type)
            answers.add(qa.answer)
    assert {"yes", "no", "0", "outdoors", "indoors"} <= answers


def test_conversation_answers_are_true():
    for scene in SCENES:
        rounds = conversation(scene, rng(scene.index, 5))
        assert 2 <= len(rounds) <= 4
        for question, answer in rounds:
            assert background_is_true(scene, answer), answer
            if m := re.fullmatch(r"What color is (.+)\?", question):
                assert answer.endswith(f" is {the_one(scene, m[1]).colour}."), answer
            elif m := re.fullmatch(r"How many (\w+)s are in the picture\?", question):
                words = ("no", "one", "two", "three", "four")
                assert f" {words[count_of(scene, m[1])]} {m[1]}" in answer, answer
            elif m := re.fullmatch(r"Where is the (\w+ \w+)\?", question):
                assert sum(t.name == m[1] for t in scene.things) == 1
            elif question.startswith("What objects"):
                assert all(t.name in answer for t in scene.things)


def test_reasoning_answers_are_true():
    for scene in SCENES:
        question, answer = reasoning(scene, rng(scene.index, 5))
        width, height = scene.size
        if m := re.fullmatch(r"Which object is closest to the (\w+) edge of the image\?", question):
            named = the_one(scene, answer.split(" is closest")[0])
            gap = {"left": lambda t: t.bbox[0], "right": lambda t: width - t.bbox[0] - t.bbox[2],
                   "top": lambda t: t.bbox[1], "bottom": lambda t: height - t.bbox[1] - t.bbox[3]}[m[1]]
            assert all(gap(named) < gap(t) for t in scene.things if t is not named), (question, answer)
        elif question == "Which object takes up the most space in the picture?":
            named = the_one(scene, answer.split(" does:")[0])
            assert named.area == max(t.area for t in scene.things)
        elif m := re.fullmatch(r"Are there more (\w+)s than (\w+)s\?", question):
            assert answer.startswith("Yes" if count_of(scene, m[1]) > count_of(scene, m[2]) else "No")
        elif question.startswith("If "):
            left = len(scene.things) - 1
            assert answer.startswith("None" if left == 0 else ("one", "two", "three")[left - 1].capitalize())
        elif question == "Could this scene be at a beach?":
            assert answer.startswith("Yes") == ("sand" in {s.category for s in scene.stuff})


def test_regions_and_descriptions_are_true():
    for scene in SCENES:
        text = detailed_description(scene)
        assert background_is_true(scene, text), text
        assert all(t.name in text for t in scene.things)
        assert ("outdoor scene" in text) == is_outdoor(scene)
        for thing in scene.things:
            x, y, w, h = thing.bbox
            where = region(scene, thing)
            if where in ("in the sky", "on the wall"):
                assert not (scene.segments[: y + h] == 2).any()  # the ground starts below the object
            elif where is not None:
                assert not (scene.segments[y:] == 1).any()  # the sky (or wall) ends above it


def test_entity_sentences_name_each_object_and_link_group_and_position_chains():
    for scene in SCENES:
        sentences = entity_sentences(scene, rng(scene.index, 2))
        assert len(sentences) == 5
        for sentence in sentences:
            text = " ".join(p.words if isinstance(p, Mention) else p for p in sentence)
            assert background_is_true(scene, text), text
        things = {t.segment_id: t for t in scene.things}
        mentioned = {p.target for s in sentences for p in s if isinstance(p, Mention)}
        assert {("thing", s) for s in things} <= mentioned  # every object has its own chain
        for part in (p for s in sentences for p in s if isinstance(p, Mention)):
            if part.target[0] == "thing":
                assert part.words.split()[-2:] == things[part.target[1]].name.split()
            elif part.target[0] == "extreme":
                assert denotes(scene, part.words) == [things[part.target[1]]], part.words
        if len(things) > 1:
            assert any(t[0] == "group" and len(t) == 1 + len(things) for t in mentioned)


def test_text_tasks_outputs_are_computed_exactly():
    seen_constraints = set()
    for index in range(300):
        record = unnatural_instructions.record(rng(index, 6))
        (instance,) = record["instances"]
        given, output, instruction = instance["input"], instance["output"], record["instruction"]
        assert instance["instruction_with_input"] == f"{instruction}\nInput: {given}"
        seen_constraints.add(instance["constraints"])
        if "Sort" in instruction:
            numbers = sorted((int(n) for n in given.split(", ")), reverse="descending" in instruction)
            assert output == ", ".join(map(str, numbers))
        elif "arithmetic" in instruction:
            a, op, b = given.split()
            assert int(output) == {"+": int(a) + int(b), "-": int(a) - int(b), "×": int(a) * int(b)}[op]
        elif "even or odd" in instruction:
            assert output == ("odd" if int(given) % 2 else "even")
        elif "backwards" in instruction:
            assert output == "".join(reversed(given))
        elif "How many words" in instruction:
            assert int(output) == len(given.split())
        elif m := re.search(r"letter '(\w)'", instruction):
            assert int(output) == given.count(m[1])
        else:
            raise AssertionError(instruction)
    assert {None, "None.", "The output should be 'even' or 'odd'."} <= seen_constraints


@pytest.mark.parametrize("colour", sorted(THING_COLOURS))
def test_the_independent_reader_knows_every_word(colour):
    scene = next(s for s in SCENES if any(t.colour == colour for t in s.things))
    thing = next(t for t in scene.things if t.colour == colour)
    assert thing in denotes(scene, f"the {colour} {thing.shape}")
