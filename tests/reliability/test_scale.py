"""CI subset of the scale scenario: 1k and 10k-sample builds (memory flat enough to stay under 2 GB
at 100k, rates held, every sample read back) and a loader over 100 and 1k shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scale import SCENARIOS, BuildPoint, predicted_peak

pytestmark = pytest.mark.slow


def point(samples: int, peak_mb: int) -> BuildPoint:
    return BuildPoint(samples, 1, peak_mb << 20, 1.0, 1.0, 1.0, 1.0, 0, 0)


def test_a_per_sample_growth_is_caught_before_it_reaches_the_largest_size() -> None:
    # 40 KB per sample between 1k and 10k: fine at 10k (510 MB), 4 GB at 100k
    assert predicted_peak(point(1_000, 150), point(10_000, 510), 100_000) > 2 << 30
    assert predicted_peak(point(1_000, 150), point(10_000, 160), 100_000) < 300 << 20


def test_ci_subset(tmp_path: Path) -> None:
    scale = SCENARIOS[0]
    outcomes = scale.run(scale.ci_trials, 20261203, tmp_path)
    assert len(outcomes) == 3
    for outcome in outcomes:
        outcome.check()


def test_ci_subset_of_a_coco_panoptic_sized_annotation_file(tmp_path: Path) -> None:
    SCENARIOS[1].run(SCENARIOS[1].ci_trials, 20261208, tmp_path).check()
