"""Shared inputs of the model tests: the option variants of the tiny preset and a mixed batch."""

from __future__ import annotations

import torch

from models.prompt import collate, encode_conversation

VARIANTS = {
    "merger": {}, "mlp": {"connector": "mlp"}, "vce": {"connector": "vce"}, "crayon": {"crayon": True},
    "crayon-layers": {"crayon_layers": True}, "jamba": {"llm": "jamba"}, "dual-lora": {"adapter": "dual-lora"},
    "dual-qlora-on-cpu": {"adapter": "dual"},
}


def batch_for(model, seed: int = 0):
    """Two rows with an image and one text-only row between them."""
    tok = model.tokenizer
    rows = [encode_conversation(tok, [("user", "[refer] where is the red circle ?"), ("assistant", "{<1><2><30><40>}")],
                                visual_tokens=model.visual_tokens),
            encode_conversation(tok, [("user", "Say hello."), ("assistant", "hello"), ("user", "again"),
                                      ("assistant", "hello hello")], visual_tokens=None),
            encode_conversation(tok, [("user", "[caption] describe"), ("assistant", "a blue square")],
                                visual_tokens=model.visual_tokens)]
    batch = collate(rows, tok.pad_token_id)
    generator = torch.Generator().manual_seed(seed)
    batch["pixel_values"] = torch.randn(2, 3, 112, 112, generator=generator)
    if model.crayon is not None:
        batch["crayon"] = torch.randint(0, 6, (2, 8, 8, 2), generator=generator)
    return batch
