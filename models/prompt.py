"""MiniGPT-v2's conversation template, tokenisation and label masks (minigptv2-data-spec.md 2).

Single turn with an image (2.2)::

    <s> [INST] <Img> [V x visual tokens] </Img> {instruction}  [/INST] {answer} </s>

- the prompt is ``"[INST] <Img><ImageHere></Img> {instruction}  [/INST]"`` (two spaces: the
  dataset's trailing space plus the template's), split at ``<ImageHere>``; each text piece is
  tokenised without special tokens; ``visual_tokens`` placeholder positions stand where the
  projected visual embeddings go (``image_mask`` marks them);
- text-only samples (2.3) have no image part: ``"[INST] {instruction} [/INST]"``;
- later turns of a conversation (2.4) are ``<s>`` + ``"[INST] {question}  [/INST]"``;
- labels are -100 everywhere except answers and their ``</s>``; the regression side (answers
  and later questions) is truncated to ``max_text_tokens`` (MiniGPT-v2's ``max_txt_len``); the
  first prompt is never cut.

All markup is plain text for the tokenizer (no added special tokens), as in MiniGPT-v2; BOS and
EOS are the tokenizer's own ids, appended here rather than parsed from "</s>" in text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE = -100
IMAGE_OPEN, IMAGE_CLOSE = "[INST] <Img>", "</Img> "


@dataclass(frozen=True)
class Encoded:
    """One sample as token ids: ``image_mask`` marks the visual-token placeholders."""

    input_ids: list[int]
    labels: list[int]
    image_mask: list[bool]

    @property
    def has_image(self) -> bool:
        return any(self.image_mask)


def encode_conversation(tokenizer, turns: Sequence[tuple[str, str]], *, visual_tokens: int | None,
                        max_text_tokens: int = 1024) -> Encoded:
    """``turns``: (role, text) pairs, user first, alternating; ``visual_tokens`` None = text-only."""
    if len(turns) < 2 or len(turns) % 2:
        raise ValueError(f"a conversation is user/assistant pairs, got {len(turns)} turns")
    for i, (role, _) in enumerate(turns):
        if role != ("user", "assistant")[i % 2]:
            raise ValueError(f"turn {i} is {role!r}: turns alternate user, assistant, starting with user")
    prompt = encode_prompt(tokenizer, turns[0][1], visual_tokens=visual_tokens)
    ids, mask = list(prompt.input_ids), list(prompt.image_mask)
    regression: list[int] = []
    supervised: list[bool] = []
    for i in range(1, len(turns), 2):
        if i > 1:  # a later question: <s>[INST] q  [/INST], not supervised
            question = [tokenizer.bos_token_id, *_tokens(tokenizer, f"[INST] {turns[i - 1][1]}  [/INST]")]
            regression += question
            supervised += [False] * len(question)
        answer = [*_tokens(tokenizer, turns[i][1]), tokenizer.eos_token_id]
        regression += answer
        supervised += [True] * len(answer)
    regression, supervised = regression[:max_text_tokens], supervised[:max_text_tokens]
    labels = [IGNORE] * len(ids) + [t if s else IGNORE for t, s in zip(regression, supervised)]
    return Encoded(ids + regression, labels, mask + [False] * len(regression))


def encode_prompt(tokenizer, instruction: str, *, visual_tokens: int | None) -> Encoded:
    """BOS + the first prompt, ready for generation (no answer, nothing supervised)."""
    bos = [tokenizer.bos_token_id]
    if visual_tokens is None:
        ids, mask = bos + _tokens(tokenizer, f"[INST] {instruction} [/INST]"), None
    else:
        before = bos + _tokens(tokenizer, IMAGE_OPEN)
        after = _tokens(tokenizer, f"{IMAGE_CLOSE}{instruction}  [/INST]")
        ids = before + [tokenizer.pad_token_id] * visual_tokens + after
        mask = [False] * len(before) + [True] * visual_tokens + [False] * len(after)
    return Encoded(ids, [IGNORE] * len(ids), mask or [False] * len(ids))


def collate(samples: Sequence[Encoded], pad_id: int, *, left: bool = False) -> dict[str, Tensor]:
    """Pad to the longest sample: input_ids, attention_mask, labels, image_mask (B, T). Right padding
    for training (as MiniGPT-v2); ``left`` for batched generation, so every prompt ends at the last column."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    length = max(len(s.input_ids) for s in samples)
    out = {"input_ids": torch.full((len(samples), length), pad_id, dtype=torch.long),
           "attention_mask": torch.zeros((len(samples), length), dtype=torch.long),
           "labels": torch.full((len(samples), length), IGNORE, dtype=torch.long),
           "image_mask": torch.zeros((len(samples), length), dtype=torch.bool)}
    for row, s in enumerate(samples):
        n = len(s.input_ids)
        span = slice(length - n, length) if left else slice(0, n)
        out["input_ids"][row, span] = torch.tensor(s.input_ids)
        out["attention_mask"][row, span] = 1
        out["labels"][row, span] = torch.tensor(s.labels)
        out["image_mask"][row, span] = torch.tensor(s.image_mask)
    return out


def _tokens(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
