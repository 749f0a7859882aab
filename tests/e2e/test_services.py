"""A Serve service through the whole product: SDK deploy -> quota -> leader-worker groups on the
admitted pool -> HTTP through Serve's proxy; status; a restart of the control service leaves it
running; delete."""

from __future__ import annotations

import time

import httpx
import pytest

import rayfleet

pytestmark = pytest.mark.slow


def test_multi_host_service_end_to_end(fleet_service):
    fleet = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-b"))
    svc = rayfleet.Service.model_validate({
        "metadata": {"name": "mlp"},
        "spec": {"importPath": "serve_apps.pipeline_mlp:app", "queue": "team-b", "routePrefix": "/mlp",
                 "replicaGroup": {"hostsPerReplica": 2, "resourcesPerHost": {"cpu": 1, "nvidia.com/gpu": 1},
                                  "accelerator": "nvidia-tesla-t4"},
                 "autoscaling": {"minReplicas": 1, "maxReplicas": 2}},
    })
    handle = fleet.deploy(svc)
    assert handle.data["status"]["state"] == "PENDING"
    st = handle.wait_running(timeout=400)
    assert st["replicasGranted"] >= 1 and st["replicasRunning"] >= 1 and st["flavor"] == "t4"
    url = st["url"]
    assert url.endswith("/mlp")
    r = httpx.post(url, json={"inputs": [[0.1] * 16]}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["outputs"]) == 1 and len(body["outputs"][0]) == 4
    assert len(set(body["hosts"])) == 2 and all(h.startswith("t4-") for h in body["hosts"])
    # the group's quota is visible on the queue
    q = fleet.queue("team-b")["status"]
    assert q["usage"]["t4"]["nvidia.com/gpu"] >= 2
    # a restart of the control service leaves the running service alone
    fleet_service.kill9()
    fleet_service.start()
    fleet = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-b"))
    time.sleep(3)
    after = fleet.service("mlp").status()
    assert after["state"] == "RUNNING" and after["replicasRunning"] >= 1
    assert httpx.post(url, json={"inputs": [[0.2] * 16]}, timeout=60).status_code == 200
    # another team may not touch it: to team A it is not there
    other = rayfleet.connect(fleet_service.url, token=fleet_service.token("team-a"))
    with pytest.raises(rayfleet.errors.NotFound):
        other.service("mlp")
    fleet.service("mlp").delete()
    deadline = time.monotonic() + 120
    while fleet.service("mlp").status()["state"] != "DELETED":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert fleet.queue("team-b")["status"]["usage"].get("t4", {}).get("nvidia.com/gpu", 0) == 0
