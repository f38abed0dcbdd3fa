"""The Ray cluster a command runs on: the caller's, a given address, or a private local one.

An initialised Ray (a test session, a flow) is used as it is and left running; ``address`` joins
an existing cluster (its nodes must see the same storage); otherwise a local cluster with every
CPU of this machine and no dashboard is started, and stopped when the command is done. Yields the
cluster's resources (CPU, GPU counts) so the caller can size its workers.

A private local cluster listens on 127.0.0.1 only. On Linux Ray otherwise takes the machine's
outward address as the node's and binds its GCS, raylet and worker servers to every interface;
with the node address on loopback (what Ray does itself on macOS and Windows, where clusters are
off unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is set) every server binds to 127.0.0.1.
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
        with loopback_node():
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING")
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


@contextmanager
def loopback_node() -> Iterator[None]:
    """While a local head starts (``ray.init`` inside): its node address resolves to loopback (Ray's
    own single-machine mode, read from ``ray_constants`` at call time), in this driver and in the
    processes it starts."""
    import ray._private.ray_constants as constants

    saved, saved_env = constants.ENABLE_RAY_CLUSTER, os.environ.get(constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    constants.ENABLE_RAY_CLUSTER = False
    os.environ[constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved_env
