"""Six sample-world pictures (seed 0) for the segment tests, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets_builders.sample_world.world import write_sample_world


@pytest.fixture(scope="session")
def world_images(tmp_path_factory) -> Path:
    """The folder of the six JPEGs (all in the train split)."""
    out = tmp_path_factory.mktemp("segment-world")
    write_sample_world(out, images=6, seed=0)
    folder = out / "coco-panoptic" / "train2017"
    assert len(list(folder.glob("*.jpg"))) == 6
    return folder
