"""The small world the on-disk tests share (the fixtures in ``conftest.py`` write it once)."""

from __future__ import annotations

import json
from pathlib import Path

SEED, IMAGES = 3, 20
SPLITS = ("train", "val", "test")


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
