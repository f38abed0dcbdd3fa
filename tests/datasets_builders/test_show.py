"""``crayonflow shards show``: every box of a sample's conversation found and labelled, drawn where
the grid says on the picture, the crayon map beside it; the command writes PNGs of the draws."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from datasets_builders.build import build_dataset
from datasets_builders.cli import shards_app
from datasets_builders.formats.schema import Image as StoredImage
from datasets_builders.formats.schema import Sample, Source, Turn
from datasets_builders.show import PANEL, labelled_boxes, render_sample


def white_jpeg(width: int, height: int) -> StoredImage:
    import io

    out = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(out, "JPEG", quality=95)
    return StoredImage(out.getvalue(), "jpg", width, height)


def test_boxes_are_labelled_by_their_phrase_or_turn_and_drawn_at_their_grid_place():
    sample = Sample("k1", "grounding", (Turn("user", "[refer] the cat"),
                                        Turn("assistant", "<p>a cat</p> {<10><20><50><60>} near {<0><0><5><5>}")),
                    Source("test", "1"), image=white_jpeg(200, 100))
    assert labelled_boxes(sample) == [("a cat", (10, 20, 50, 60)), ("assistant 1", (0, 0, 5, 5))]
    picture = np.asarray(render_sample(sample))
    scale = PANEL / 200  # the picture panel is the image at PANEL px on its longer side
    x0, y0 = round(0.10 * 200 * scale), round(0.20 * 100 * scale)
    assert picture[y0 + 1, x0 + 1].tolist() != [255, 255, 255]  # the box's edge is drawn there
    assert picture[y0 + 20, x0 + 20].tolist() == [255, 255, 255]  # its inside is the picture


def test_the_command_draws_seeded_samples_of_a_task_and_one_by_key(world, tmp_path):
    built = build_dataset("coco-panoptic", world / "coco-panoptic", tmp_path / "pan").root
    runner = CliRunner()
    drawn = runner.invoke(shards_app, ["show", str(built), "--random", "2", "--seed", "3", "--out",
                                       str(tmp_path / "png" / "s.png")], terminal_width=200)
    assert drawn.exit_code == 0, drawn.output
    paths = sorted((tmp_path / "png").glob("s-*.png"))
    assert len(paths) == 2
    with Image.open(paths[0]) as picture:
        assert picture.width > 2 * PANEL  # the picture and its crayon map side by side
    missing = runner.invoke(shards_app, ["show", str(built), "--key", "nope"], terminal_width=200)
    assert missing.exit_code == 1 and "has no sample 'nope'" in missing.output
