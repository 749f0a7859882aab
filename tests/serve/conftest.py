"""The Serve tests run on the session's shared local Ray cluster (``pools_backend`` in
tests/conftest.py), on its pool ``l4``: 3 simulated hosts, each its own raylet with 1 fake L4 GPU
and the labels of ``rayfleet.api.labels``. Serve is shut down when the module's tests are done, and a
host a test killed is brought back, so the cluster is as it was for the tests that follow."""

from __future__ import annotations

import pytest

from rayfleet.serve.deployer import ServeDeployer, ServeOptions


@pytest.fixture(scope="session")
def serve_cluster(pools_backend):
    return pools_backend


@pytest.fixture(scope="module")
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
        d.shutdown()
    serve_cluster.up()  # repairs a host a test killed
