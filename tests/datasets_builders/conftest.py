"""One small sample world per test session, shared by the sample-world and builder tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets_builders.sample_world.world import FORMATS, write_sample_world
from tests.datasets_builders.sample_world.small_world import IMAGES, SEED


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "sample"
    summary = write_sample_world(out, images=IMAGES, seed=SEED)
    assert summary.splits == {"train": 16, "val": 2, "test": 2}
    assert summary.formats == tuple(FORMATS)
    return out
