"""Autoscaling under quota through the control service (the whole loop, not a simulated controller).

Serve's autoscaler (with rayfleet's policy) says how many replica groups load wants; the controller
asks quota for every group above the base as its own workload; what quota grants becomes Serve's
``max_replicas``; a lender's reclaim preempts a borrowed group, which Serve drains without failing a
request; when load stops the extra groups are released and their quota returned.

The platform (tests/e2e/fleet.yaml): pool ``t4`` has 2 hosts x 2 GPUs; team-b's nominal quota is 2
T4s and team-a lends it at most 1 (``lendingLimit``). So team-b's single-host classifier, 1 GPU per
group, can have 3 groups while a 4th GPU of the pool stays free: the cap is quota's, not capacity's.
"""

from __future__ import annotations

import time

import httpx
import pytest
from http_load import Load

import rayfleet
from rayfleet.backends import make_backend
from rayfleet.config import load_config

pytestmark = pytest.mark.slow

BODY = {"inputs": [[5.1, 3.5, 1.4, 0.2]], "work_ms": 300}


def _service() -> rayfleet.Service:
    return rayfleet.Service.model_validate({
        "metadata": {"name": "clf"},
        "spec": {
            "importPath": "serve_apps.classifier:app", "queue": "team-b", "routePrefix": "/clf",
            "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"cpu": 1, "nvidia.com/gpu": 1}, "accelerator": "nvidia-tesla-t4"},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetOngoingRequests": 1, "upscaleDelay": "1s",
                            "downscaleDelay": "3s", "lookBackPeriod": "2s", "metricsInterval": "0.5s"},
        },
    })


class Watch:
    """Polls the service's status through the API; keeps every observation."""

    def __init__(self, handle: rayfleet.client.ServiceHandle):
        self.handle = handle
        self.seen: list[tuple[float, dict]] = []

    def poll(self) -> dict:
        st = self.handle.status()
        self.seen.append((time.monotonic(), st))
        return st

    def until(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = self.poll()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                lines = [f"{t:.1f} {_counts(s)} {s['state']} {s['message']}" for t, s in self.seen]
                changes = [line for i, line in enumerate(lines) if i == 0 or line.split(" ", 1)[1] != lines[i - 1].split(" ", 1)[1]]
                history = "\n".join(changes[-40:])
                raise AssertionError(f"{what}: not reached in {timeout}s; last statuses:\n{history}")
            time.sleep(0.5)


def _counts(st: dict) -> tuple[int, int, int]:
    return st["replicasWanted"], st["replicasGranted"], st["replicasRunning"]


def _serve_deployment(fleet_service) -> dict:
    """Serve's own view of the service's group deployment, from the cluster's dashboard."""
    backend = make_backend(load_config([fleet_service.config]), fleet_service.data_dir)
    info = backend.info()
    apps = httpx.get(f"{info.dashboard_url}/api/serve/applications/", headers=backend.auth_headers(),  # the cluster's token
                     timeout=30).json()["applications"]
    (dep,) = apps["clf"]["deployments"].values()
    return dep


def _gpu(queue: dict, key: str) -> int:
    return queue["status"][key].get("t4", {}).get("nvidia.com/gpu", 0)


def test_load_borrows_up_to_the_grant_a_reclaim_drains_a_group_and_idle_returns_the_quota(fleet_service):
    b = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-b"))
    a = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-a"))
    handle = b.deploy(_service())
    watch = Watch(handle)
    st = handle.wait_running(timeout=300)
    assert _counts(st)[1:] == (1, 1) and st["flavor"] == "t4"
    url = st["url"] + "/"

    load = Load(url, BODY, clients=8).start()
    try:
        # Load wants all 4 groups; quota grants 3 (2 nominal + the 1 team-a lends); 3 run.
        st = watch.until(lambda s: _counts(s) == (4, 3, 3), 300, "3 groups running, 4 wanted")
        assert "1 group(s) wanted beyond quota: 3 granted; replica group 3 waiting for quota" in st["message"], st["message"]
        queue_b = b.queue("team-b")
        assert _gpu(queue_b, "usage") == 3 and _gpu(queue_b, "borrowed") == 1
        # Held by quota, not capacity: a T4 is free, yet Serve's cap stays 3 for as long as load lasts.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            watch.poll()
            time.sleep(0.5)
        window = [s for t, s in watch.seen if t >= t0]
        assert all(s["replicasGranted"] == 3 and s["replicasRunning"] <= 3 and s["replicasWanted"] == 4 for s in window)
        dep = _serve_deployment(fleet_service)
        assert dep["deployment_config"]["autoscaling_config"]["max_replicas"] == 3
        before = {r["replica_id"] for r in dep["replicas"] if r["state"] == "RUNNING"}
        assert len(before) == 3

        # team-a's production job needs its 2 nominal T4s: the free one and the one it lent.
        # Quota reclaims the borrowed group; Serve drains it; the job runs.
        job = a.submit(rayfleet.TrainJob.model_validate({
            "metadata": {"name": "reclaimer"},
            "spec": {"queue": "team-a", "priorityClass": "production", "entrypoint": "sleep 3",
                     "gang": {"workers": 2, "resourcesPerWorker": {"cpu": "500m", "nvidia.com/gpu": 1}, "accelerator": "nvidia-tesla-t4"}},
        }))
        st = watch.until(lambda s: s["replicasGranted"] == 2 and s["replicasRunning"] == 2, 180, "the borrowed group drained")
        assert st["replicasWanted"] == 4
        # Exactly the surplus group went: the two that stay are groups that were already serving.
        after = {r["replica_id"] for r in _serve_deployment(fleet_service)["replicas"] if r["state"] == "RUNNING"}
        assert len(after) == 2 and after <= before, (before, after)
        preempted = [e for e in handle.events() if e["type"] == "Preempted"]
        assert [e["data"]["workload"] for e in preempted] == ["svc.clf.2"], preempted
        assert job.wait(timeout=300)["state"] == "SUCCEEDED"
        # The lender is idle again: load still wants more, so team-b borrows the T4 back.
        watch.until(lambda s: _counts(s) == (4, 3, 3), 240, "the group borrowed again")
    finally:
        load.stop()
    assert load.results and not load.failures(), load.failures()[:5]

    # Load stops: Serve scales down after its delay, the extra groups go, and so does the borrowing.
    watch.until(lambda s: _counts(s) == (1, 1, 1) and s["state"] == "RUNNING", 180, "back to 1 group")
    queue_b = b.queue("team-b")
    assert _gpu(queue_b, "usage") == 1 and _gpu(queue_b, "borrowed") == 0
    released = {e["data"]["workload"] for e in handle.events() if e["type"] == "Released"}
    assert released == {"svc.clf.1", "svc.clf.3"} or released == {"svc.clf.1", "svc.clf.2"}, released
    # team-b is charged for the groups it held, as serving cost
    with fleet_service.client() as admin:  # /metrics needs an admin token
        metrics = admin.get("/metrics").text.splitlines()
    (held,) = [ln for ln in metrics if ln.startswith('rayfleet_team_serve_host_seconds_total{team="team-b"}')]
    assert float(held.rsplit(" ", 1)[1]) > 0

    handle.delete()
    watch.until(lambda s: s["state"] == "DELETED", 120, "deleted")
    assert _gpu(b.queue("team-b"), "usage") == 0
