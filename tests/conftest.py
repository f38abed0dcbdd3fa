"""Shared fixtures: one torch thread, one Ray cluster per test session (started only if a test asks)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
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
