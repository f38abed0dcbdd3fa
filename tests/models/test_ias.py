"""VisLingInstruct's Instruction Alignment Score: the NLL by hand, per instruction, ranking, and lower = better."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from PIL import ImageDraw

import models.ias as ias
from models.build import build_model
from models.chat import image_inputs
from models.ias import (
    IAS_PROMPT,
    Optimized,
    optimize_instruction,
    rank_instructions,
    rewrite,
    score_instruction,
    score_instructions,
)
from models.presets import tiny
from models.prompt import IGNORE, collate, encode_conversation, encode_prompt

INSTRUCTIONS = ["[refer] where is the red circle", "Describe this picture in one short sentence please."]


@pytest.fixture(scope="module")
def model():
    return build_model(tiny())


@pytest.fixture(scope="module")
def image() -> PILImage.Image:
    picture = PILImage.new("RGB", (160, 120), (30, 90, 200))
    ImageDraw.Draw(picture).ellipse((20, 30, 80, 90), fill=(220, 20, 20))
    return picture


def _manual_ias(model, image, instruction: str, crayon: np.ndarray | None = None) -> float:
    """Mean -log p over the instruction's tokens and EOS after the fixed IAS prompt, from the raw logits."""
    tok = model.tokenizer
    encoded = encode_conversation(tok, [("user", IAS_PROMPT), ("assistant", instruction)],
                                  visual_tokens=model.visual_tokens)
    batch = collate([encoded], tok.pad_token_id)
    pixels, crayons = image_inputs(model, [image], [crayon])
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["attention_mask"], batch["image_mask"], pixel_values=pixels,
                       crayon=crayons).logits[0]
    log_probs = F.log_softmax(logits.double(), dim=-1)
    labels = batch["labels"][0]
    positions = (labels != IGNORE).nonzero().flatten().tolist()
    target = tok(instruction, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [int(labels[p]) for p in positions] == target  # exactly the instruction and its EOS are scored
    prompt = encode_prompt(tok, IAS_PROMPT, visual_tokens=model.visual_tokens).input_ids
    assert batch["input_ids"][0, : len(prompt)].tolist() == prompt and positions[0] == len(prompt)
    nll = [-float(log_probs[p - 1, int(labels[p])]) for p in positions]  # token p is predicted at p - 1
    return sum(nll) / len(nll)


def test_the_score_is_the_mean_nll_of_the_instruction_and_eos_after_the_fixed_prompt_by_hand(model, image):
    scores = score_instructions(model, image, INSTRUCTIONS)
    manual = [_manual_ias(model, image, text) for text in INSTRUCTIONS]
    assert scores == pytest.approx(manual, abs=1e-4)
    # a random 2048-token model: close to log(2048) = 7.62 per token, and clearly not the same for both
    assert all(5.0 < s < 10.0 for s in scores) and abs(scores[0] - scores[1]) > 1e-3


def test_scores_are_per_instruction_so_batching_changes_nothing(model, image):
    together = score_instructions(model, image, INSTRUCTIONS)
    alone = [score_instruction(model, image, text) for text in INSTRUCTIONS]
    reversed_batch = score_instructions(model, image, INSTRUCTIONS[::-1])[::-1]
    assert together == pytest.approx(alone, abs=1e-5)
    assert reversed_batch == pytest.approx(alone, abs=1e-5)
    # not the batch's token-weighted mean, which is what a plain outputs.loss would give
    tok = model.tokenizer
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in INSTRUCTIONS]
    assert lengths[0] != lengths[1]
    pooled = sum(s * n for s, n in zip(alone, lengths)) / sum(lengths)
    assert all(abs(s - pooled) > 1e-3 for s in together)


def test_the_score_depends_on_the_image(model, image):
    other = PILImage.new("RGB", (160, 120), (250, 250, 250))
    here, there = (score_instruction(model, picture, INSTRUCTIONS[0]) for picture in (image, other))
    assert abs(here - there) > 1e-4


def test_a_crayon_model_scores_with_the_given_crayon_map_or_an_all_unknown_one():
    crayon_model = build_model(tiny(crayon=True))
    picture = PILImage.new("RGB", (112, 112), (10, 200, 10))
    crayon = np.zeros((112, 112, 2), dtype=np.uint8)
    crayon[:56] = (1, 1)
    with_map = score_instruction(crayon_model, picture, INSTRUCTIONS[0], crayon=crayon)
    assert with_map == pytest.approx(_manual_ias(crayon_model, picture, INSTRUCTIONS[0], crayon), abs=1e-4)
    unknown = score_instruction(crayon_model, picture, INSTRUCTIONS[0])
    assert unknown == pytest.approx(score_instruction(crayon_model, picture, INSTRUCTIONS[0],
                                                      crayon=np.zeros((40, 30, 2), np.uint8)), abs=1e-6)
    assert abs(with_map - unknown) > 1e-5


def test_rank_instructions_sorts_by_score_lowest_first(model, image):
    candidates = [*INSTRUCTIONS, "what color is the circle", "zebra zebra zebra zebra"]
    ranked = rank_instructions(model, image, candidates)
    scores = dict(zip(candidates, score_instructions(model, image, candidates)))
    assert sorted(text for text, _ in ranked) == sorted(candidates)
    assert [s for _, s in ranked] == sorted(scores.values())
    assert all(score == pytest.approx(scores[text], abs=1e-6) for text, score in ranked)


def test_rank_instructions_keeps_the_given_order_on_ties(model, image, monkeypatch):
    monkeypatch.setattr(ias, "score_instructions", lambda m, im, texts, crayon=None: [2.0, 1.0, 2.0, 1.0])
    assert rank_instructions(model, image, ["a", "b", "c", "d"]) == [("b", 1.0), ("d", 1.0), ("a", 2.0), ("c", 2.0)]


def test_optimize_instruction_keeps_the_rewrite_only_when_it_scores_lower(model, image, monkeypatch):
    original = INSTRUCTIONS[0]
    result = optimize_instruction(model, image, original)
    rewritten = rewrite(model, original)
    expected = score_instructions(model, image, [original, rewritten])
    assert isinstance(result, Optimized)
    assert [text for text, _ in result.scores] == [original, rewritten]
    assert [s for _, s in result.scores] == pytest.approx(expected, abs=1e-5)
    assert result.best == min(result.scores, key=lambda pair: pair[1])[0]
    # both branches, with a rewrite whose score is known to be lower, then higher, then equal
    pool = [original, "zebra", "[refer] red circle", "a", "the the the the", "[refer] where is the red circle ?"]
    scores = dict(zip(pool, score_instructions(model, image, pool)))
    low, high = min(pool, key=scores.get), max(pool, key=scores.get)
    for candidate in (low, high):
        monkeypatch.setattr(ias, "rewrite", lambda m, text, candidate=candidate: candidate)
        chosen = optimize_instruction(model, image, original)
        assert chosen.best == (candidate if scores[candidate] < scores[original] else original)
        assert dict(chosen.scores) == pytest.approx({original: scores[original], candidate: scores[candidate]},
                                                    abs=1e-5)
    assert scores[low] < scores[original] < scores[high]  # both branches were taken
    monkeypatch.setattr(ias, "rewrite", lambda m, text: text)
    assert optimize_instruction(model, image, original).best == original  # a tie keeps the original


def test_rewrite_is_text_only_and_falls_back_to_the_original_for_an_empty_answer(model, monkeypatch):
    calls = []

    def generate(input_ids, attention_mask, image_mask, *args, **kwargs):
        calls.append((input_ids, image_mask, args))
        return [[model.tokenizer.eos_token_id]] if len(calls) > 1 else [[]]

    monkeypatch.setattr(model, "generate", generate)
    assert rewrite(model, "the text") == "the text"
    assert rewrite(model, "the text") == "the text"
    ids, image_mask, args = calls[0]
    assert not image_mask.any() and args == ()  # no image, no pixel values
    assert "modify the text to make it better" in model.tokenizer.decode(ids[0].tolist())
    assert "There is the text the text." in model.tokenizer.decode(ids[0].tolist())


def _ias_loss_batch(model, image, instruction: str) -> dict:
    encoded = encode_conversation(model.tokenizer, [("user", IAS_PROMPT), ("assistant", instruction)],
                                  visual_tokens=model.visual_tokens)
    batch = collate([encoded], model.tokenizer.pad_token_id)
    batch["pixel_values"], _ = image_inputs(model, [image])
    return batch


TRAIN_STEPS = 30  #: measured: IAS 7.66 -> 6.14 for the trained instruction, 7.70 -> 7.43 for the other (2026-12-08)


def test_training_the_model_to_say_one_instruction_for_an_image_lowers_its_score_below_an_unrelated_one(image):
    trained = build_model(tiny())
    target, unrelated = "[refer] where is the red circle", "[vqa] how many zebras are sleeping on the sofa"
    before = score_instructions(trained, image, [target, unrelated])
    assert abs(before[0] - before[1]) < 0.5  # untrained, neither instruction fits the image better
    batch = _ias_loss_batch(trained, image, target)
    optimizer = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=1e-2)
    trained.train()
    torch.manual_seed(0)
    for _ in range(TRAIN_STEPS):
        optimizer.zero_grad(set_to_none=True)
        trained(**batch).loss.backward()
        optimizer.step()
    after = score_instructions(trained, image, [target, unrelated])
    # LoRA r=8 on q/v of a random LLM learns slowly, but the direction is unambiguous: the trained instruction's
    # IAS falls by over a nat while the unrelated one's barely moves, so lower = better aligned
    assert before[0] - after[0] > 1.0 and abs(after[1] - before[1]) < 0.5
    assert after[0] < after[1] - 0.5  # and now the trained one fits clearly better
    assert after[0] < after[1] - 1.0
    ranked = rank_instructions(trained, image, [unrelated, target])
    assert [text for text, _ in ranked] == [target, unrelated]
