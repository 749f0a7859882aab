"""Builders shared by the KubeRay backend tests."""

from __future__ import annotations

import time
from pathlib import Path

from rayfleet.api import Service, TrainJob

GKE_EXAMPLE = Path(__file__).resolve().parents[2] / "cluster_configs" / "gke-example.yaml"
GOLDEN = Path(__file__).resolve().parent / "golden"


def train_job(name: str, *, queue: str = "training", workers: int = 1, per_worker: dict | None = None,
              accelerator: str | None = None, max_run: str | None = "2h", **spec) -> TrainJob:
    gang: dict = {"workers": workers, "resourcesPerWorker": per_worker or {"cpu": "1"}}
    if accelerator:
        gang["accelerator"] = accelerator
    body = {"entrypoint": "python train.py", "queue": queue, "gang": gang, **spec}
    if max_run:
        body["maxRunDuration"] = max_run
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": body})


def service(name: str, **spec) -> Service:
    body = {"importPath": "serve_apps.llm:app", "queue": "inference", **spec}
    return Service.model_validate({"metadata": {"name": name}, "spec": body})


def until(cond, timeout: float = 5.0) -> bool:
    """Whether ``cond()`` came true within ``timeout`` seconds (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


_GROUPS = {"rayclusters": "ray.io", "rayjobs": "ray.io", "rayservices": "ray.io", "provisioningrequests": "autoscaling.x-k8s.io"}


def rbac_denied(objects: list[dict], requests) -> list[tuple[str, str]]:
    """The (verb, resource) requests (the fake API server's counts) that the Role and ClusterRole
    among ``objects`` (``--self``'s) do not allow; nodes are cluster-scoped, the rest namespaced."""
    rules = {o["kind"]: o["rules"] for o in objects if o["kind"] in ("Role", "ClusterRole")}

    def allowed(verb: str, resource: str) -> bool:
        group = _GROUPS.get(resource.split("/")[0], "")
        scope = rules["ClusterRole"] if resource.startswith("nodes") else rules["Role"]
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in scope)

    return [(verb, res) for verb, res in sorted(requests) if res not in ("discovery", "-") and not allowed(verb, res)]
