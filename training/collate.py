"""Fetched samples -> one model batch: wording, tokens, masks, pixels, crayon maps, padding.

Wording: a templated sample (its ``meta.fields`` and a task the renderer knows) is re-rendered
with template ``xxh3(seed, key, draw) mod pool`` — a new wording each time the sample is drawn,
as MiniGPT-v2 picks a random template, yet reproducible from the draw counter alone; other
samples (LLaVA, multi-round, text) keep their stored turns. Tokens and labels follow MiniGPT-v2
(``models.prompt``); images are resized without cropping and crayon maps pooled to the patch
grid (``models.inputs``); rows are right-padded. Per-row task names, keys and datasets ride along
so the trainer can report losses per task and say what each step saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import xxhash

from datasets_builders.templates.render import TASKS as RENDERED_TASKS
from datasets_builders.templates.render import render
from models.inputs import InputSpec
from models.prompt import collate, encode_conversation
from training.mixture.loader import Fetched


@dataclass
class Batch:
    tensors: dict[str, torch.Tensor]  #: input_ids, attention_mask, labels, image_mask [, pixel_values, crayon]
    tasks: list[str]
    keys: list[str]  #: "<dataset>/<sample key>" per row
    replaced: int = 0  #: undecodable samples replaced in this batch
    epochs: dict[str, int] = field(default_factory=dict)  #: highest dataset epoch drawn from


class Collator:
    def __init__(self, spec: InputSpec, seed: int, *, vary_templates: bool = True) -> None:
        self.spec, self.seed, self.vary_templates = spec, seed, vary_templates

    def turns(self, fetched: Fetched) -> list[tuple[str, str]]:
        sample = fetched.sample
        fields = sample.meta.get("fields")
        if self.vary_templates and fields is not None and sample.task in RENDERED_TASKS:
            choice = xxhash.xxh3_64_intdigest(f"{self.seed}\x1f{sample.key}\x1f{fetched.item.draw}".encode())
            width, height = (sample.image.width, sample.image.height) if sample.image else (0, 0)
            turns = render(sample.task, fields, key=sample.key, width=width, height=height, template=choice)
        else:
            turns = sample.turns
        return [(t.role, t.content) for t in turns]

    def __call__(self, fetched: Sequence[Fetched]) -> Batch:
        spec = self.spec
        encoded = [encode_conversation(spec.tokenizer, self.turns(f),
                                       visual_tokens=spec.visual_tokens if f.image is not None else None,
                                       max_text_tokens=spec.max_text_tokens) for f in fetched]
        tensors = collate(encoded, spec.tokenizer.pad_token_id)
        with_images = [f for f in fetched if f.image is not None]
        if with_images:
            tensors["pixel_values"] = spec.pixels([f.image for f in with_images])
            crayons = spec.crayons([f.crayon for f in with_images])
            if crayons is not None:
                tensors["crayon"] = crayons
        epochs: dict[str, int] = {}
        for f in fetched:
            epochs[f.item.dataset] = max(epochs.get(f.item.dataset, 0), f.item.epoch)
        return Batch(tensors, [f.sample.task for f in fetched], [f"{f.item.dataset}/{f.sample.key}" for f in fetched],
                     sum(f.replaced for f in fetched), epochs)
