"""``pretrain vision``: the folder loads into the tiny VLM, is reused by fingerprint, the dense
objective is wired (a short fit beats chance on its own scenes), and the command runs through typer.

Sizes are tiny (a few 112 px scenes, tens of steps): these check wiring, not the accuracies
docs/model-looks.md reports.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image as PILImage
from safetensors.torch import load_file
from typer.testing import CliRunner

from datasets_builders.sample_world.patches import patch_truth
from datasets_builders.sample_world.scene import generate_scene
from datasets_builders.sample_world.world import JPEG_QUALITY
from models.build import build_model
from models.chat import image_inputs
from models.config import CLIP_MEAN, CLIP_STD
from models.inputs import pixels
from models.presets import tiny
from models.prompt import collate, encode_conversation
from training.pretrain.cache import FINGERPRINT_FILE
from training.pretrain.cli import vision_command
from training.pretrain.vision import (
    HEADS_FILE,
    WORLD_SEED,
    PatchHeads,
    _mirror,
    fit_patch_heads,
    patch_accuracies,
    pretrain_vision,
    render_scenes,
    tiny_tower,
)

SMALL = {"steps": 20, "batch": 4, "scenes": 6, "held_out": 3, "image_size": 112}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, dict]:
    folder, report, reused = pretrain_vision(tmp_path_factory.mktemp("vision") / "tower", **SMALL)
    assert not reused
    return folder, report


def test_the_folder_loads_into_the_tiny_vlm_and_runs(pretrained) -> None:
    folder, report = pretrained
    assert (folder / "config.json").is_file() and (folder / HEADS_FILE).is_file()
    assert set(report["held_out"]) >= {"category", "colour", "shape", "thing_recall"}
    model = build_model(tiny(vision_checkpoint=str(folder)))
    saved = load_file(folder / "model.safetensors")
    loaded = model.vision.model.state_dict()
    assert saved and all(torch.equal(loaded[name], weights) for name, weights in saved.items())
    random = build_model(tiny()).vision.model.state_dict()
    assert not all(torch.equal(random[name], weights) for name, weights in saved.items())  # not the random tower
    tok = model.tokenizer
    batch = collate([encode_conversation(tok, [("user", "[vqa] what colour is the circle"), ("assistant", "red")],
                                         visual_tokens=model.visual_tokens)], tok.pad_token_id)
    batch["pixel_values"], _ = image_inputs(model, [generate_scene(3, 0).image])
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_a_second_call_reuses_the_folder_and_a_changed_argument_rebuilds(pretrained) -> None:
    folder, report = pretrained
    stamp = (folder / FINGERPRINT_FILE).read_text()
    again, report_again, reused = pretrain_vision(folder, **SMALL)
    assert reused and again == folder and report_again == json.loads(json.dumps(report))
    _, _, reused = pretrain_vision(folder, **{**SMALL, "steps": SMALL["steps"] + 1})
    assert not reused
    assert (folder / FINGERPRINT_FILE).read_text() != stamp


def test_a_short_fit_reads_categories_well_above_chance_on_its_scenes() -> None:
    torch.manual_seed(0)
    data = render_scenes(2_000_003, range(4), 112, 14, shape_radius=1)
    tower = tiny_tower(112, seed=0)
    heads = PatchHeads(tower.width)
    before = patch_accuracies(tower, heads, data)
    fit_patch_heads(tower, heads, data, steps=60, batch=4, lr=3e-3, seed=0)
    after = patch_accuracies(tower, heads, data)
    assert after["category"] > after["majority_baseline"] + 0.2, (before, after)
    assert after["category"] > before["category"] + 0.2, (before, after)


def test_the_command_builds_then_says_it_reuses(tmp_path) -> None:
    app = typer.Typer()
    app.command()(vision_command)
    args = ["--out", str(tmp_path / "tower"), "--steps", "5", "--batch", "2", "--scenes", "3", "--held-out", "2"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "held-out per patch: category" in first.output and "built in" in first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "reused" in second.output
    bad = CliRunner().invoke(app, [*args, "--image-size", "100"])
    assert bad.exit_code == 2 and "multiple of the patch size" in bad.output


def test_mirroring_a_rendered_scene_matches_rendering_the_mirrored_scene() -> None:
    """The flip augmentation moves pictures and truth together: column c becomes column P - 1 - c."""
    scene = generate_scene(WORLD_SEED, 1)
    mirrored_scene = dataclasses.replace(scene, image=scene.image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT),
                                         segments=np.ascontiguousarray(scene.segments[:, ::-1]))
    data = render_scenes(WORLD_SEED, [1], 112, 14, shape_radius=1)
    everything = torch.ones(1, dtype=torch.bool)
    truth = patch_truth(mirrored_scene, 8)
    for rendered, expected in ((data.categories, truth.categories), (data.colours, truth.colours)):
        assert torch.allclose(_mirror(rendered, everything, 8), torch.from_numpy(expected).flatten(0, 1)[None],
                              atol=1e-6)
    picture = PILImage.open(io.BytesIO(scene.jpeg(JPEG_QUALITY))).transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
    assert torch.allclose(_mirror(data.pixel_values, everything, 8), pixels([picture], 112, CLIP_MEAN, CLIP_STD),
                          atol=1e-4)
    assert torch.equal(_mirror(data.categories, ~everything, 8), data.categories)
