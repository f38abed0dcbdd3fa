"""The CI subset of the build faults: each scenario of build_faults.py at its ci_trials count."""

from __future__ import annotations

import pytest

from tests.reliability.build_faults import SCENARIOS


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_build_fault_scenario(scenario, tmp_path):
    scenario.run(scenario.ci_trials, 20261203, tmp_path).check()
