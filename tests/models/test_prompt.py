"""MiniGPT-v2's template, token by token: what is prompt, what is image, what is supervised."""

from __future__ import annotations

import pytest

from models.prompt import IGNORE, collate, encode_conversation, encode_prompt
from models.tokenizer import tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_a_single_turn_with_an_image_is_bos_prompt_visual_tokens_answer_eos(tok):
    e = encode_conversation(tok, [("user", "[refer] where is the red car ?"), ("assistant", "{<73><0><100><27>}")],
                            visual_tokens=5)
    before, after = ids(tok, "[INST] <Img>"), ids(tok, "</Img> [refer] where is the red car ?  [/INST]")
    answer = ids(tok, "{<73><0><100><27>}") + [tok.eos_token_id]
    assert e.input_ids == [tok.bos_token_id, *before, *[tok.pad_token_id] * 5, *after, *answer]
    prompt_length = 1 + len(before) + 5 + len(after)
    assert e.image_mask == [False] * (1 + len(before)) + [True] * 5 + [False] * (len(after) + len(answer))
    assert e.labels == [IGNORE] * prompt_length + answer  # only the answer and its EOS are supervised
    assert tok.decode(e.input_ids[prompt_length - len(after):prompt_length]).endswith("?  [/INST]")  # two spaces


def test_text_only_samples_have_no_image_part_and_one_space_before_the_closing_tag(tok):
    e = encode_conversation(tok, [("user", "Write a haiku."), ("assistant", "ok")], visual_tokens=None)
    assert e.input_ids == [tok.bos_token_id, *ids(tok, "[INST] Write a haiku. [/INST]"), *ids(tok, "ok"),
                           tok.eos_token_id]
    assert not e.has_image and not any(e.image_mask)
    assert tok.decode(e.input_ids[1:]) == "[INST] Write a haiku. [/INST]ok</s>"


def test_later_turns_start_with_bos_and_only_answers_are_supervised(tok):
    turns = [("user", "[vqa] what color ?"), ("assistant", "red"), ("user", "[refer] the circle"),
             ("assistant", "{<1><2><3><4>}")]
    e = encode_conversation(tok, turns, visual_tokens=3)
    first = encode_prompt(tok, "[vqa] what color ?", visual_tokens=3).input_ids
    a1 = ids(tok, "red") + [tok.eos_token_id]
    q2 = [tok.bos_token_id, *ids(tok, "[INST] [refer] the circle  [/INST]")]
    a2 = ids(tok, "{<1><2><3><4>}") + [tok.eos_token_id]
    assert e.input_ids == first + a1 + q2 + a2
    assert e.labels == [IGNORE] * len(first) + a1 + [IGNORE] * len(q2) + a2


def test_the_regression_side_is_truncated_and_the_prompt_never(tok):
    long_answer = " ".join(["word"] * 50)
    e = encode_conversation(tok, [("user", "[caption] describe"), ("assistant", long_answer)], visual_tokens=2,
                            max_text_tokens=7)
    prompt = encode_prompt(tok, "[caption] describe", visual_tokens=2).input_ids
    assert e.input_ids[: len(prompt)] == prompt and len(e.input_ids) == len(prompt) + 7
    assert sum(label != IGNORE for label in e.labels) == 7 and e.labels[-1] != tok.eos_token_id


@pytest.mark.parametrize("turns, message", [
    ([("user", "only a question")], "user/assistant pairs"),
    ([("assistant", "a"), ("user", "q")], "turn 0 is 'assistant'"),
])
def test_broken_conversations_are_refused(tok, turns, message):
    with pytest.raises(ValueError, match=message):
        encode_conversation(tok, turns, visual_tokens=None)


def test_collate_pads_on_the_right_and_masks_the_padding(tok):
    a = encode_conversation(tok, [("user", "q"), ("assistant", "a")], visual_tokens=2)
    b = encode_conversation(tok, [("user", "a much longer question than the other one"), ("assistant", "and its answer")], visual_tokens=None)
    batch = collate([a, b], tok.pad_token_id)
    n = len(a.input_ids)
    assert batch["input_ids"].shape == (2, len(b.input_ids)) and len(b.input_ids) > n
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(b.input_ids) - n)
    assert batch["labels"][0, n:].eq(IGNORE).all() and batch["input_ids"][0, n:].eq(tok.pad_token_id).all()
    assert batch["image_mask"][0].sum() == 2 and not batch["image_mask"][1].any()
