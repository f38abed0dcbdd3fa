"""The real raw-format samples in ``../shared/fixtures`` (or ``$CRAYONFLOW_FIXTURES``), read in place.

They are never copied into the repository; a test that needs one skips, saying which, when the
folder is absent (a clone outside the workspace)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(os.environ.get("CRAYONFLOW_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def real_fixture(name: str) -> Path:
    """``FIXTURES / name``, or skip the test with the reason."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"real fixture {path} not present (set CRAYONFLOW_FIXTURES to the shared fixtures folder)")
    return path
