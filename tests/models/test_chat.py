"""Chat: box strings back to pixels, ask, draw, and ``crayonflow chat`` end to end on a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageDraw
from typer.testing import CliRunner

from datasets_builders.formats.boxes import PixelBox, find_boxes, to_pixels
from datasets_builders.sample_world.world import write_sample_world
from models.build import build_model
from models.chat import Answer, ask, draw_boxes, image_inputs
from models.checkpoint import save_model
from models.presets import tiny
from models.prompt import collate, encode_conversation
from pipelines.cli import app

INSTRUCTION = "[refer] where is the red circle"
BOX_ANSWER = "{<10><20><50><60>}"
BOX_PIXELS = PixelBox(20.0, 20.0, 100.0, 60.0)  #: BOX_ANSWER on the 200 x 100 image
#: Adam lr 3e-3 on every trainable part (connector + LoRA). Measured: greedy decoding gives exactly BOX_ANSWER
#: from step 70 on; at 120 every answer token leads the runner-up by more than 1.1 logits.
TRAIN_STEPS = 120
TEXT = ("<p>red circle</p> {<10><20><50><60>} and <p>the frame</p> {<0><0><100><100>}; "
        "not boxes: {<5><5><200><9>} {<50><20><10><60>} {<1><2><3>} { <1><2><3><4>}")

runner = CliRunner()


# ---- box strings -----------------------------------------------------------------------------


def test_find_boxes_returns_the_well_formed_boxes_in_order_and_skips_malformed_ones():
    assert find_boxes(TEXT) == [(10, 20, 50, 60), (0, 0, 100, 100)]  # > 100, inverted, 3 corners, a space: skipped
    assert find_boxes("{<1><2><3><4>}<delim>{<5><6><7><8>}") == [(1, 2, 3, 4), (5, 6, 7, 8)]
    assert find_boxes("no boxes at all") == []


def test_to_pixels_scales_percent_corners_by_the_original_width_and_height():
    assert to_pixels((10, 20, 50, 60), 200, 100) == BOX_PIXELS
    assert to_pixels((0, 0, 100, 100), 200, 100) == PixelBox(0.0, 0.0, 200.0, 100.0)
    assert to_pixels((33, 10, 67, 20), 640, 480).xyxy() == pytest.approx([211.2, 48.0, 428.8, 96.0])


# ---- ask and draw ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained():
    return build_model(tiny())


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    """A 200 x 100 PNG (lossless, so training and the CLI see the same pixels) with a red circle."""
    image = PILImage.new("RGB", (200, 100), (30, 90, 200))
    ImageDraw.Draw(image).ellipse((20, 20, 100, 60), fill=(220, 20, 20))
    path = tmp_path_factory.mktemp("picture") / "circle.png"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def trained(picture, tmp_path_factory):
    """The tiny model overfit on ONE sample: this image, INSTRUCTION -> BOX_ANSWER; saved as a checkpoint."""
    model = build_model(tiny())
    image = PILImage.open(picture)
    tok = model.tokenizer
    batch = collate([encode_conversation(tok, [("user", INSTRUCTION), ("assistant", BOX_ANSWER)],
                                         visual_tokens=model.visual_tokens)], tok.pad_token_id)
    batch["pixel_values"], _ = image_inputs(model, [image])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(TRAIN_STEPS):
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()
    folder = save_model(model, tmp_path_factory.mktemp("trained") / "checkpoint")
    return model, folder


def test_ask_returns_the_answer_text_and_its_boxes_mapped_to_the_images_pixels(untrained, picture):
    image = PILImage.open(picture)
    answer = ask(untrained, image, INSTRUCTION, max_new_tokens=24)
    assert isinstance(answer, Answer) and isinstance(answer.text, str)
    assert answer.boxes == tuple(to_pixels(b, 200, 100) for b in find_boxes(answer.text))
    assert answer == ask(untrained, image, INSTRUCTION, max_new_tokens=24)  # greedy: deterministic


def test_ask_parses_every_box_of_the_decoded_answer_and_only_those(untrained, picture, monkeypatch):
    tok = untrained.tokenizer
    seen = {}

    def generate(input_ids, attention_mask, image_mask, pixel_values, crayon, max_new_tokens):
        seen.update(image_mask=image_mask, pixel_values=pixel_values, max_new_tokens=max_new_tokens)
        return [tok(TEXT, add_special_tokens=False)["input_ids"]]

    monkeypatch.setattr(untrained, "generate", generate)
    answer = ask(untrained, PILImage.open(picture), INSTRUCTION, max_new_tokens=7)
    assert answer.text == TEXT
    assert answer.boxes == (BOX_PIXELS, PixelBox(0.0, 0.0, 200.0, 100.0))
    assert seen["image_mask"].sum() == 16 and seen["pixel_values"].shape == (1, 3, 112, 112)
    assert seen["max_new_tokens"] == 7


def test_the_overfit_model_answers_its_box_and_ask_maps_it_to_pixels(trained, picture):
    model, _ = trained
    answer = ask(model, PILImage.open(picture), INSTRUCTION)
    assert answer == Answer(BOX_ANSWER, (BOX_PIXELS,))


def _outline(box: tuple[int, int, int, int], width: int, shape: tuple[int, int]) -> np.ndarray:
    """The ``width`` px ring just inside a box with exclusive right/bottom edges."""
    x0, y0, x1, y1 = box
    ring = np.zeros(shape, dtype=bool)
    ring[y0:y1, x0:x1] = True
    ring[y0 + width:y1 - width, x0 + width:x1 - width] = False
    return ring


def test_draw_boxes_changes_only_the_box_outline_and_its_small_number_label():
    image = PILImage.new("RGB", (200, 100), (255, 255, 255))
    before = np.asarray(image).copy()
    out = draw_boxes(image, [BOX_PIXELS])
    assert np.array_equal(np.asarray(image), before)  # the input is not drawn on
    pixels = np.asarray(out)
    changed = np.any(pixels != 255, axis=-1)
    ring = _outline((20, 20, 100, 60), 2, changed.shape)  # width max(2, 100 / 150) = 2 px
    assert (pixels[ring] == (255, 0, 80)).all()  # the whole outline, in the outline colour
    label = np.zeros_like(changed)
    label[22:34, 22:34] = True  # the number "1", just inside the top-left corner
    assert changed[~ring & ~label].sum() == 0  # nothing outside the box, nothing else inside it
    assert changed[label & ~ring].sum() > 5


def test_a_box_reaching_the_image_edge_gets_its_full_outline_on_every_side():
    image = PILImage.new("RGB", (200, 100), (255, 255, 255))
    pixels = np.asarray(draw_boxes(image, [PixelBox(0.0, 0.0, 200.0, 100.0)]))
    ring = _outline((0, 0, 200, 100), 2, pixels.shape[:2])
    assert (pixels[ring] == (255, 0, 80)).all()  # right and bottom too: the 2 px are inside the image


def test_draw_boxes_numbers_several_boxes_and_keeps_a_degenerate_one_drawable():
    image = PILImage.new("RGB", (300, 300), (0, 0, 0))
    boxes = [PixelBox(10.0, 10.0, 100.0, 100.0), PixelBox(150.0, 150.0, 290.0, 290.0), PixelBox(50, 200, 50, 250)]
    pixels = np.asarray(draw_boxes(image, boxes))
    assert pixels.shape == (300, 300, 3)
    for box in boxes[:2]:
        x0, y0, x1, y1 = (int(v) for v in box.xyxy())
        assert (pixels[_outline((x0, y0, x1, y1), 2, (300, 300))] == (255, 0, 80)).all()
    assert (pixels[200:250, 50] == (255, 0, 80)).all()  # a zero-width box is one drawn column
    # each box is labelled with its number just inside its top-left corner: "1" and "2" differ
    labels = [pixels[int(b.y0) + 2:int(b.y0) + 14, int(b.x0) + 2:int(b.x0) + 14, 0] > 0 for b in boxes[:2]]
    assert labels[0].sum() > 5 and labels[1].sum() > 5 and not np.array_equal(labels[0], labels[1])


# ---- crayonflow chat ---------------------------------------------------------------------------


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_model_init_then_chat_answers_about_a_sample_world_image_and_draws_the_boxes(tmp_path):
    write_sample_world(tmp_path / "world", images=4, seed=0)
    image = sorted((tmp_path / "world" / "coco-panoptic" / "train2017").glob("*.jpg"))[0]
    checkpoint, drawn = tmp_path / "tiny", tmp_path / "out.png"
    init = runner.invoke(app, ["model", "init", "--out", str(checkpoint)])
    assert init.exit_code == 0, init.output
    assert f"{checkpoint}: tiny checkpoint" in init.output
    files = {p.name for p in checkpoint.iterdir()}
    assert {"model.json", "tokenizer", "trainable.safetensors", "base.safetensors"} <= files
    result = runner.invoke(app, ["chat", "--checkpoint", str(checkpoint), "--image", str(image),
                                 "[refer] where is the red circle", "--draw", str(drawn), "--max-new-tokens", "16"])
    assert result.exit_code == 0, result.output
    assert drawn.is_file() and "drew " in result.output and str(drawn) in result.output
    with PILImage.open(image) as original, PILImage.open(drawn) as out:
        assert out.size == original.size and out.mode == "RGB"


def test_chat_prints_a_box_answer_in_the_images_pixels_and_draws_it(trained, picture, tmp_path):
    _, checkpoint = trained
    drawn = tmp_path / "answer.png"
    result = runner.invoke(app, ["chat", "--checkpoint", str(checkpoint), "--image", str(picture), INSTRUCTION,
                                 "--draw", str(drawn)])
    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    assert lines[0] == BOX_ANSWER
    assert lines[1] == "box 1: x0=20 y0=20 x1=100 y1=60 px (200x100 image)"
    assert lines[2] == f"drew 1 boxes: {drawn}"
    with PILImage.open(drawn) as out:
        pixels = np.asarray(out.convert("RGB"))
    assert (pixels[_outline((20, 20, 100, 60), 2, (100, 200))] == (255, 0, 80)).all()
    with PILImage.open(picture) as original:
        assert np.array_equal(pixels[:, 101:], np.asarray(original)[:, 101:])  # right of the box: untouched


def test_chat_with_a_missing_checkpoint_folder_exits_2_with_one_line_naming_it(picture, tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    result = runner.invoke(app, ["chat", "--checkpoint", str(missing), "--image", str(picture), INSTRUCTION])
    assert result.exit_code == 2
    lines = _lines(result.output)
    assert len(lines) == 1 and str(missing) in lines[0] and "not a model checkpoint" in lines[0]


def test_chat_with_an_unreadable_or_missing_image_exits_2_with_one_line_naming_it(trained, tmp_path):
    _, checkpoint = trained
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    for image in (broken, tmp_path / "missing.png"):
        result = runner.invoke(app, ["chat", "--checkpoint", str(checkpoint), "--image", str(image), INSTRUCTION])
        assert result.exit_code == 2, result.output
        lines = _lines(result.output)
        assert len(lines) == 1 and lines[0].startswith(f"{image}: cannot be read"), lines
