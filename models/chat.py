"""Ask a GroundedVLM about one image: the answer text, and its boxes in pixels (drawn if asked).

The prompt is MiniGPT-v2's inference prompt for one turn (``<s>[INST] <Img><ImageHere></Img>
{instruction}  [/INST]``), decoded greedily. Box strings anywhere in the answer are parsed with
``datasets_builders.formats.boxes`` (the same code that wrote the training targets) and mapped
back to the original image's pixels. A model with a crayon prompt reads the image's crayon map
when one is given, else an all-unknown map (what CoLLaVO feeds for an image with no segment).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageDraw

from datasets_builders.formats.boxes import PixelBox, find_boxes, to_pixels
from models.grounded_vlm import GroundedVLM, inference
from models.inputs import InputSpec
from models.prompt import collate, encode_prompt


@dataclass(frozen=True)
class Answer:
    text: str
    boxes: tuple[PixelBox, ...]  #: every box of the answer, in the image's pixels


def image_inputs(model: GroundedVLM, images: Sequence[PILImage.Image],
                 crayons: Sequence[np.ndarray | None] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pixel values (N, 3, S, S) and, for a crayon model, pooled crayon maps (N, P, P, 2)."""
    spec = InputSpec.of(model)
    return spec.pixels(images), spec.crayons(crayons or [None] * len(images))


def ask(model: GroundedVLM, image: PILImage.Image, instruction: str, *, crayon: np.ndarray | None = None,
        max_new_tokens: int = 64) -> Answer:
    prompt = encode_prompt(model.tokenizer, instruction, visual_tokens=model.visual_tokens)
    batch = collate([prompt], model.tokenizer.pad_token_id)
    pixels, crayons = image_inputs(model, [image], [crayon])
    with inference(model):
        ids = model.generate(batch["input_ids"], batch["attention_mask"], batch["image_mask"], pixels, crayons,
                             max_new_tokens=max_new_tokens)[0]
    text = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
    return Answer(text, tuple(to_pixels(b, image.width, image.height) for b in find_boxes(text)))


def draw_boxes(image: PILImage.Image, boxes: Sequence[PixelBox]) -> PILImage.Image:
    """A copy of the image with each box outlined and numbered in order."""
    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 150))
    for i, box in enumerate(boxes, start=1):
        # PIL's corners are inclusive, a PixelBox's right/bottom edges exclusive: draw on the box's last pixels
        pen.rectangle((box.x0, box.y0, max(box.x0, box.x1 - 1), max(box.y0, box.y1 - 1)), outline=(255, 0, 80),
                      width=width)
        pen.text((box.x0 + width + 1, box.y0 + width), str(i), fill=(255, 0, 80))
    return out


def pseudo_labeler(checkpoint: Path, max_new_tokens: int = 128) -> tuple[Callable[[bytes, str], str], str]:
    """For multiround's pseudo-labels: (image bytes, instruction) -> answer, and the identity to record
    (the folder and a digest of its weights, so a retrained checkpoint rebuilds the dataset)."""
    from models.checkpoint import checkpoint_digest, load_model

    model = load_model(checkpoint)

    def label(image: bytes, instruction: str) -> str:
        with PILImage.open(io.BytesIO(image)) as picture:
            return ask(model, picture.convert("RGB"), instruction, max_new_tokens=max_new_tokens).text

    return label, f"{checkpoint} xxh3:{checkpoint_digest(checkpoint)}"
