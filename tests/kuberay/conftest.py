"""Fixtures of the KubeRay backend tests: the GKE example config and a fake API server."""

from __future__ import annotations

import pytest
from fake_apiserver import FakeApiServer
from kuberay_helpers import GKE_EXAMPLE

from rayfleet.backends.kuberay.client import KubeRayBackend
from rayfleet.config import PlatformConfig, load_config
from rayfleet.server.main import kuberay_serve_app  # the Serve application production deploys


@pytest.fixture(scope="session")
def gke_cfg() -> PlatformConfig:
    return load_config([GKE_EXAMPLE])


@pytest.fixture
def fake_api():
    with FakeApiServer() as api:
        yield api


@pytest.fixture
def backend(gke_cfg, fake_api) -> KubeRayBackend:
    return KubeRayBackend(gke_cfg, fake_api.api_client(), serve_app=kuberay_serve_app)
