"""VisLingInstruct's Instruction Alignment Score and its rewrite loop (model-spec.md 3.3-3.4).

``IAS(I) = mean_i -log P(t_i | image, X_prompt, t_<i)`` over the tokens of instruction I plus
EOS, with the fixed prompt ``"Based on the image given, the most appropriate instruction should
be:"``: the instruction's log-perplexity under this image for this model. **Lower is better.**
Here the prompt is the user turn (with the image, in MiniGPT-v2's template) and I is scored as
the answer, so prompt and image positions are masked exactly as in training. Scores are per
instruction (never averaged over a batch).

``optimize_instruction`` is the paper's loop cut to what the issue asks: rewrite once with the
LLM alone (the paper's rewrite prompt, no image), score both, keep the lower. The in-context
"compare and regenerate" step is left out. ``rank_instructions`` orders candidates (template
pools, say) by IAS, so a data pipeline can keep the best-aligned templates; it takes any model
and is passed in by ``pipelines`` (the data layer does not import models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from models.chat import image_inputs
from models.grounded_vlm import GroundedVLM, inference
from models.prompt import collate, encode_conversation, encode_prompt

IAS_PROMPT = "Based on the image given, the most appropriate instruction should be:"
REWRITE_PROMPT = ("There is the text {}. Please modify the text to make it better while retaining the sentence "
                  "structure and keywords.")


@dataclass(frozen=True)
class Optimized:
    best: str
    scores: tuple[tuple[str, float], ...]  #: (instruction, IAS) of the original and its rewrite


def score_instructions(model: GroundedVLM, image: PILImage.Image, instructions: Sequence[str], *,
                       crayon: np.ndarray | None = None) -> list[float]:
    """IAS of each instruction for ``image`` (one batch)."""
    if not instructions:
        return []
    encoded = [encode_conversation(model.tokenizer, [("user", IAS_PROMPT), ("assistant", text)],
                                   visual_tokens=model.visual_tokens, max_text_tokens=model.config.max_text_tokens)
               for text in instructions]
    batch = collate(encoded, model.tokenizer.pad_token_id)
    pixels, crayons = image_inputs(model, [image] * len(instructions), [crayon] * len(instructions))
    with inference(model):
        out = model(**batch, pixel_values=pixels, crayon=crayons)
    per_sample = out.token_loss.sum(1) / out.supervised.sum(1).clamp(min=1)
    return [float(v) for v in per_sample]


def score_instruction(model: GroundedVLM, image: PILImage.Image, instruction: str, *,
                      crayon: np.ndarray | None = None) -> float:
    return score_instructions(model, image, [instruction], crayon=crayon)[0]


def rank_instructions(model: GroundedVLM, image: PILImage.Image, candidates: Sequence[str], *,
                      crayon: np.ndarray | None = None) -> list[tuple[str, float]]:
    """Candidates with their IAS, best (lowest) first; ties keep the given order."""
    scores = score_instructions(model, image, candidates, crayon=crayon)
    return sorted(zip(candidates, scores), key=lambda pair: pair[1])


def rewrite(model: GroundedVLM, instruction: str, max_new_tokens: int = 64) -> str:
    """The LLM's rewrite of ``instruction`` (text only, greedy); the original if it answers nothing."""
    prompt = encode_prompt(model.tokenizer, REWRITE_PROMPT.format(instruction), visual_tokens=None)
    batch = collate([prompt], model.tokenizer.pad_token_id)
    with inference(model):
        ids = model.generate(batch["input_ids"], batch["attention_mask"], batch["image_mask"],
                             max_new_tokens=max_new_tokens)[0]
    text = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
    return text or instruction


def optimize_instruction(model: GroundedVLM, image: PILImage.Image, instruction: str, *,
                         crayon: np.ndarray | None = None) -> Optimized:
    """Rewrite once, score both, keep the lower IAS (the original on a tie)."""
    candidates = [instruction, rewrite(model, instruction)]
    scores = score_instructions(model, image, candidates, crayon=crayon)
    best = candidates[1] if scores[1] < scores[0] else candidates[0]
    return Optimized(best, tuple(zip(candidates, scores)))
