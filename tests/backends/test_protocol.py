"""Both backends implement the protocol the controller drives; only KubeRay owns Serve itself."""

from __future__ import annotations

from pathlib import Path

from rayfleet.backends import make_backend
from rayfleet.backends.base import Backend, ServingBackend
from rayfleet.config import load_config
from rayfleet.server.serving import BackendServing, LocalServing, serving_for

ROOT = Path(__file__).resolve().parents[2]


def test_local_backend_is_a_backend_and_serves_through_the_rest_api(tmp_path):
    backend = make_backend(load_config([ROOT / "cluster_configs" / "local.yaml"]), tmp_path)
    assert isinstance(backend, Backend) and not isinstance(backend, ServingBackend)
    assert isinstance(serving_for(backend), LocalServing)


def test_kuberay_backend_owns_serve():
    from kubernetes import client as k8s

    from rayfleet.backends.kuberay.client import KubeRayBackend

    # an API client that is never called: construction only
    backend = KubeRayBackend(load_config([ROOT / "cluster_configs" / "gke-example.yaml"]), api_client=k8s.ApiClient())
    assert isinstance(backend, Backend) and isinstance(backend, ServingBackend)
    assert isinstance(serving_for(backend), BackendServing)


def test_sim_backend_is_a_backend_and_owns_serve(tmp_path):
    cfg = load_config([ROOT / "cluster_configs" / "local.yaml"])
    backend = make_backend(cfg, tmp_path, kind="sim")
    assert isinstance(backend, Backend) and isinstance(backend, ServingBackend)
    assert isinstance(serving_for(backend), BackendServing)
    assert backend.info() is None and backend.up().backend == "sim" and backend.info() is not None
