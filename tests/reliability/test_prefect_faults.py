"""The CI subset of the orchestration faults, on the session's Prefect test server."""

from __future__ import annotations

import pytest

from tests.reliability import prefect_faults
from tests.reliability.trials import Scenario

SEED = 20261203
BY_NAME: dict[str, Scenario] = {s.name: s for s in prefect_faults.SCENARIOS}
pytestmark = pytest.mark.slow


def test_a_transient_read_error_in_a_part_is_retried_and_the_dataset_is_unchanged(prefect_server, tmp_path):
    scenario = BY_NAME["prefect-transient-retry"]
    prefect_faults.transient_retry(scenario.ci_trials, SEED, tmp_path, current_api=True).check()


def test_a_build_killed_mid_run_reruns_from_cache_to_the_same_dataset(prefect_server, tmp_path):
    scenario = BY_NAME["prefect-flow-kill"]
    prefect_faults.flow_kill(scenario.ci_trials, SEED, tmp_path, current_api=True).check()
