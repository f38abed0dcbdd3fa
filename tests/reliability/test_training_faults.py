"""The CI subset of the training faults (training_faults.py at its ci_trials counts), on the
session's Ray cluster: one worker SIGKILLed mid-step, then one run whose latest checkpoint is
truncated, bit-flipped and stripped of a file in turn. Both share one uninterrupted reference run."""

from __future__ import annotations

import pytest

from tests.reliability.training_faults import SCENARIOS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_training_fault_scenario(scenario, ray_cluster, tmp_path):
    scenario.run(scenario.ci_trials, 20261203, tmp_path).check()
