"""Shared fixtures: one torch thread, one Ray cluster and one Prefect test server per test session
(each started only if a test asks), and a throwaway PREFECT_HOME."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Before anything imports prefect: this session's own PREFECT_HOME (results, cache records,
# profiles), so tests never read or leave cache entries in a user's ~/.prefect, and no Cloud.
_PREFECT_HOME = tempfile.mkdtemp(prefix="crayonflow-tests-prefect-")
os.environ.update(PREFECT_HOME=_PREFECT_HOME, PREFECT_PROFILES_PATH=os.path.join(_PREFECT_HOME, "profiles.toml"),
                  PREFECT_LOCAL_STORAGE_PATH=os.path.join(_PREFECT_HOME, "storage"),
                  PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_CLOUD_API_URL="http://127.0.0.1:9/disabled")
for _inherited in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_UI_API_URL"):
    os.environ.pop(_inherited, None)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local cluster for the session, bound to 127.0.0.1 like the ones Crayonflow starts."""
    import ray

    from datasets_builders.ray_session import loopback_node

    with loopback_node():
        # address="local": a cluster of its own, never one another job on this machine started
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
                 log_to_driver=False)
    # Samples differ in their members (text-only, optional crayon maps), so columns are sparse;
    # Ray's automatic cast of such columns to tensors fails on the missing values.
    ray.data.DataContext.get_current().enable_tensor_extension_casting = False
    yield
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Tiny models run fastest on one intra-op thread, and two threads fight Ray workers for 2 cores."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API (SQLite in a temp dir) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
