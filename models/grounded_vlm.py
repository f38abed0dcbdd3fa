"""GroundedVLM: vision tower -> connector (+ crayon prompt) -> spliced at <ImageHere> -> LLM.

Data through one forward (B batch rows, N images among them, T tokens, P x P patches, V visual
tokens per image, D LLM width)::

    pixel_values (N, 3, S, S) --tower.features--> maps (N, P*P, D_v) --connector--> visual (N, V, D)
    crayon (N, P, P, 2) --CrayonPrompt--> crayon tokens (N, V, D); visual += crayon tokens
    input_ids (B, T) --LLM embeddings--> (B, T, D); visual scattered at image_mask (B, T)
    --LLM (adapters; crayon branch hooks at image positions)--> logits (B, T, vocab)

Images belong to the rows whose ``image_mask`` has V True positions, in row order; text-only
rows have none. The loss is causal-LM cross-entropy over labels != -100 (answers and EOS), mean
over those tokens; ``token_loss`` keeps it per token so a trainer can report losses per task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.adapters.lora import adapter_parameters, train_adapter
from models.config import ModelConfig
from models.connectors.connector import Connector
from models.crayon_prompt import CrayonLayers, CrayonPrompt, zeros_with
from models.prompt import IGNORE
from models.vision_tower import VisionTower

#: what a training stage can make trainable; "llm" is the LLM's own weights (a from-scratch tiny LLM
#: needs them; a pretrained one trains through its adapters)
PARTS = ("vision", "connector", "crayon", "adapter", "llm")
BASE_PARTS = ("vision", "llm")  #: parts whose weights come from a base, not from the trainable file


@dataclass
class VLMOutput:
    logits: Tensor  #: (B, T, vocab)
    loss: Tensor | None = None  #: mean cross-entropy over supervised tokens
    token_loss: Tensor | None = None  #: (B, T - 1) per-token loss, 0 where not supervised
    supervised: Tensor | None = None  #: (B, T - 1) bool, the tokens the loss counts


class GroundedVLM(nn.Module):
    def __init__(self, config: ModelConfig, tokenizer, vision: VisionTower, connector: Connector, llm: nn.Module,
                 crayon: CrayonPrompt | None = None, crayon_layers: CrayonLayers | None = None) -> None:
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        self.vision, self.connector, self.llm = vision, connector, llm
        self.crayon, self.crayon_layers = crayon, crayon_layers
        self.visual_tokens = vision.grid * vision.grid // config.connector.merge
        self.base_trained: set[str] = set()  #: base parts a stage has trained (their weights left the base)
        self.set_trainable(("connector", "crayon", "adapter") + (() if config.vision.frozen else ("vision",)))

    # ---- what trains -------------------------------------------------------------------------
    def part_parameters(self, part: str) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of one of PARTS; names as in ``state_dict``."""
        if part == "vision":
            yield from self.vision.named_parameters(prefix="vision")
        elif part == "connector":
            yield from self.connector.named_parameters(prefix="connector")
        elif part == "crayon":
            for name, module in (("crayon", self.crayon), ("crayon_layers", self.crayon_layers)):
                if module is not None:
                    yield from module.named_parameters(prefix=name)
        elif part == "adapter":
            for name, param in adapter_parameters(self.llm, self.config.adapter):
                yield f"llm.{name}", param
        elif part == "llm":
            adapters = {id(p) for _, p in adapter_parameters(self.llm, self.config.adapter)}
            for name, param in self.llm.named_parameters(prefix="llm"):
                if id(param) not in adapters:
                    yield name, param
        else:
            raise ValueError(f"unknown part {part!r}; parts are {', '.join(PARTS)}")

    def set_trainable(self, parts: tuple[str, ...], adapter: str | None = None) -> None:
        """Train exactly ``parts``; ``adapter`` names the one adapter that trains (Dual LoRA: the one for
        this batch's data type); None trains every adapter."""
        self.base_trained |= set(parts) & set(BASE_PARTS)  # from now on their weights must be saved too
        self.requires_grad_(False)
        for part in parts:
            if part != "adapter":
                for _, param in self.part_parameters(part):
                    param.requires_grad_(True)
        if "adapter" in parts and adapter is not None:
            train_adapter(self.llm, self.config.adapter, adapter)
        elif "adapter" in parts:
            for _, param in self.part_parameters("adapter"):
                param.requires_grad_(True)

    # ---- forward -----------------------------------------------------------------------------
    def encode_images(self, pixel_values: Tensor, crayon: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(N, 3, S, S) [+ (N, P, P, 2)] -> visual tokens (N, V, D) and crayon tokens (N, V, D) or None."""
        maps = self.vision.features(pixel_values, self.connector.layers)
        visual = self.connector([m.to(self.connector_dtype) for m in maps])
        if self.crayon is None:
            return visual, None
        if crayon is None:
            raise ValueError("this model has a crayon prompt: pass crayon maps (N, P, P, 2) with the images")
        prompt = self.crayon(crayon)
        return visual + prompt, prompt

    def embed(self, input_ids: Tensor, image_mask: Tensor, pixel_values: Tensor | None = None,
              crayon: Tensor | None = None) -> Tensor:
        """Token embeddings with the visual tokens spliced in; attaches crayon features for the hooks."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        images = int(image_mask.sum()) // self.visual_tokens if image_mask.any() else 0
        if images * self.visual_tokens != int(image_mask.sum()):
            raise ValueError(f"image_mask marks {int(image_mask.sum())} positions, not a multiple of the "
                             f"{self.visual_tokens} visual tokens per image")
        given = 0 if pixel_values is None else pixel_values.shape[0]
        if given != images:
            raise ValueError(f"image_mask holds {images} images but {given} pixel_values were passed")
        if self.crayon_layers is not None:
            self.crayon_layers.attach(None)
        if images == 0:
            return embeds
        visual, prompt = self.encode_images(pixel_values, crayon)
        embeds = embeds.masked_scatter(image_mask[..., None], visual.to(embeds.dtype))
        if self.crayon_layers is not None:
            self.crayon_layers.attach(zeros_with(prompt, image_mask, embeds.shape))
        return embeds

    def forward(self, input_ids: Tensor, attention_mask: Tensor, image_mask: Tensor, labels: Tensor | None = None,
                pixel_values: Tensor | None = None, crayon: Tensor | None = None) -> VLMOutput:
        embeds = self.embed(input_ids, image_mask, pixel_values, crayon)
        try:
            logits = self.llm(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).logits
        finally:
            if self.crayon_layers is not None:
                self.crayon_layers.attach(None)
        if labels is None:
            return VLMOutput(logits)
        targets = labels[:, 1:]
        supervised = targets != IGNORE
        token_loss = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none")
        token_loss = token_loss * supervised
        loss = token_loss.sum() / supervised.sum().clamp(min=1)
        return VLMOutput(logits, loss, token_loss, supervised)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, attention_mask: Tensor, image_mask: Tensor,
                 pixel_values: Tensor | None = None, crayon: Tensor | None = None,
                 max_new_tokens: int = 64) -> list[list[int]]:
        """Greedy answers (new token ids, EOS cut) for LEFT-padded prompts."""
        embeds = self.embed(input_ids, image_mask, pixel_values, crayon)
        try:
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                    do_sample=False, eos_token_id=self.tokenizer.eos_token_id,
                                    pad_token_id=self.tokenizer.pad_token_id)
        finally:
            if self.crayon_layers is not None:
                self.crayon_layers.attach(None)
        eos = self.tokenizer.eos_token_id
        answers = []
        for row in out.tolist():
            answers.append(row[: row.index(eos)] if eos in row else row)
        return answers

    @property
    def connector_dtype(self) -> torch.dtype:
        return next(self.connector.parameters()).dtype


@contextmanager
def inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for a while, then back to the caller's mode (a trainer's, say)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
