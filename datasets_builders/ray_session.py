"""The Ray cluster a command runs on: the caller's, a given address, or a private local one.

An initialised Ray (a test session, a flow) is used as it is and left running; ``address`` joins
an existing cluster (its nodes must see the same storage); otherwise a local cluster with every
CPU of this machine and no dashboard is started, and stopped when the command is done. Yields the
cluster's resources (CPU, GPU counts) so the caller can size its workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None = None) -> Iterator[dict]:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    if address is not None:
        ray.init(address=address)
    else:
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
