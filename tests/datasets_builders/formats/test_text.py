"""blip_normalise: MiniGPT-v2's blip_caption processor, output for output."""

from __future__ import annotations

import pytest

from datasets_builders.formats.text import MAX_WORDS, blip_normalise


@pytest.mark.parametrize(("text", "expected"), [
    ("A Man Riding a Horse.", "a man riding a horse"),
    ("WHAT COLOR IS THE BUS", "what color is the bus"),
    ("a.b!c\"d(e)f*g#h:i;j~k", "a b c d e f g h i j k"),
    ("Is it red, or blue?", "is it red, or blue?"),
    ("the dog's frisbee-catching/ball & 3+4=7", "the dog's frisbee-catching/ball & 3+4=7"),
    ("two   spaces \t\t and\n\nlines", "two spaces and lines"),
    ("  padded  ", "padded"),
    ("Describe: (in detail!)", "describe in detail"),
    ("...!!", ""),
    ("", ""),
])
def test_exact_outputs(text, expected):
    assert blip_normalise(text) == expected


def test_each_listed_character_becomes_a_space_and_nothing_else_does():
    for ch in '.!"()*#:;~':
        assert blip_normalise(f"x{ch}y") == "x y", ch
    for ch in "?,'-/&%$@[]{}<>_=+":
        assert blip_normalise(f"x{ch}y") == f"x{ch}y", ch


def test_a_single_tab_or_newline_between_words_is_kept_as_blip_does():
    # BLIP's pre_caption collapses only runs of two or more whitespace characters.
    assert blip_normalise("Line one\nLine two") == "line one\nline two"


def test_text_is_cut_to_fifty_words():
    words = [f"w{i}" for i in range(60)]
    assert MAX_WORDS == 50
    assert blip_normalise(" ".join(words)) == " ".join(words[:50])
    assert blip_normalise(" ".join(words[:50])) == " ".join(words[:50])
    assert blip_normalise("A. B. C. D.", max_words=2) == "a b"


def test_words_are_counted_after_punctuation_becomes_space():
    # "a.b" is two words once the dot is a space; the cap applies to the normalised text.
    assert blip_normalise("a.b c.d e.f", max_words=3) == "a b c"
