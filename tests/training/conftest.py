"""Task datasets of one small sample world, built once per session for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets_builders.build import build_dataset
from datasets_builders.sample_world.world import write_sample_world

DATASETS = ("refcoco", "vqa", "coco-captions", "unnatural-instructions", "coco-panoptic")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A folder of committed datasets: <root>/<name>, 12 scenes (seed 0)."""
    root = tmp_path_factory.mktemp("training-data")
    write_sample_world(root / "raw", images=12, seed=0)
    for name in DATASETS:
        build_dataset(name, root / "raw" / name, root / "datasets" / name)
    return root / "datasets"
