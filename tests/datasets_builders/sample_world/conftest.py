"""The small world's scenes, regenerated independently of the files (the world is in ../conftest.py)."""

from __future__ import annotations

import pytest

from datasets_builders.sample_world.scene import generate_scene
from tests.datasets_builders.sample_world.small_world import IMAGES, SEED


@pytest.fixture(scope="session")
def scenes():
    return {i + 1: generate_scene(SEED, i) for i in range(IMAGES)}  # by image id
