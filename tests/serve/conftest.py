"""A real multi-node Ray cluster for the Serve tests: a head and 3 simulated L4 hosts, started once.

Each host is its own raylet with the labels and resources of ``rayfleet.api.labels`` (pool
``l4``, 1 fake GPU, ``accelerator_type:L4``). Private temp dir and ports, token auth off on both
sides; everything is stopped at the end of the session.
"""

from __future__ import annotations

import os

import pytest
from serve_helpers import L4, POOL

from rayfleet.serve.deployer import ServeDeployer, ServeOptions


@pytest.fixture(scope="session")
def serve_cluster():
    from rayfleet.serve.localcluster import LocalServeCluster

    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = LocalServeCluster(pools={POOL: (L4, 3)}, auth_mode="disabled", object_store_mib=96)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def deployer(serve_cluster):
    options = ServeOptions(
        http_port=serve_cluster.serve_port,
        health_check_period_s=1.0,
        graceful_shutdown_wait_loop_s=0.2,
        graceful_shutdown_timeout_s=20.0,
        look_back_period_s=2.0,
        metrics_interval_s=0.5,
    )
    with ServeDeployer(serve_cluster.dashboard_url, serve_cluster.address, options=options) as d:
        yield d
