"""The demo command builds and verifies a dataset, and an identical re-run reuses it."""

from __future__ import annotations

import webdataset as wds
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.demo import run_demo


def test_demo_builds_a_verified_dataset_and_reuses_it(tmp_path):
    first = run_demo(tmp_path, images=20, seed=3)
    assert first.report.ok and not first.reused
    assert first.manifest.counts.written == 20 and first.manifest.by_split == {"test": 2, "train": 16, "val": 2}
    urls = [str(p) for p in sorted(first.dataset.glob("*.tar"))]
    decoded = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(decoded) == 20 and decoded[0]["jpg"].size == tuple(decoded[0]["json"]["image"][k] for k in ("width", "height"))
    assert run_demo(tmp_path, images=20, seed=3).reused
    changed = run_demo(tmp_path, images=12, seed=3)  # other parameters replace the old build
    assert not changed.reused and changed.manifest.counts.written == 12 and changed.report.ok


def test_demo_command_reports_what_it_built(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path), "--images", "6"], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "built: 6 samples" in result.output and "verified" in result.output
