"""A gang that no pool of its queue can ever hold is refused at submit with a 422 naming the field,
on the REST API and on the Ray Jobs API (so `ray job submit` prints the same error), and takes no
quota. The fit is the one rule of ``backends.placement.gang_fit``; the Ray request's field names
come from ``ray_jobs_api.request_field``."""

from __future__ import annotations

import pytest

from rayfleet.server.controller import placement_flavors
from rayfleet.server.ray_jobs_api import request_field

# cluster_configs/local.yaml, queue team-a: h100 (2 hosts x 8 GPUs), tpu-v5e (one 2x4 slice: 2 hosts x 4 chips).
H100 = {"resourcesPerWorker": {"nvidia.com/gpu": 8}, "accelerator": "nvidia-h100-80gb"}
TPU = {"resourcesPerWorker": {"google.com/tpu": 4}, "accelerator": "tpu-v5-lite-podslice"}


def job(name: str, **gang) -> dict:
    return {"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": "team-a", "gang": gang}}


IMPOSSIBLE = [
    ("strict-pack-beyond-one-host", job("sp", workers=2, placementStrategy="STRICT_PACK", **H100),
     "spec.gang.placementStrategy", "STRICT_PACK puts all 2 workers on one host"),
    ("more-hosts-than-the-pool", job("mh", workers=3, **H100), "spec.gang.workers", "need 3 hosts"),
    ("more-than-one-tpu-slice", job("ts", workers=3, **TPU), "spec.gang.workers", "one slice"),
    ("strict-spread-beyond-the-hosts", job("ss", workers=3, placementStrategy="STRICT_SPREAD",
                                           resourcesPerWorker={"nvidia.com/gpu": 1}, accelerator="nvidia-h100-80gb"),
     "spec.gang.placementStrategy", "STRICT_SPREAD puts each of the 3 workers on its own host"),
    ("worker-larger-than-a-host", job("wl", workers=1, resourcesPerWorker={"nvidia.com/gpu": 8, "memory": "4Ti"},
                                      accelerator="nvidia-h100-80gb"),
     "spec.gang.resourcesPerWorker", "no flavor whose hosts offer"),
]


@pytest.mark.parametrize("name,body,field,fragment", IMPOSSIBLE, ids=[c[0] for c in IMPOSSIBLE])
def test_rest_refuses_a_gang_no_pool_can_hold(api, admin, fleet, name, body, field, fragment):
    r = api.post("/api/v1/jobs", json=body, headers=admin)
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert [p["field"] for p in problems] == [field]
    assert fragment in problems[0]["problem"]
    assert fleet.store.find("TrainJob", body["metadata"]["name"]) is None  # nothing stored, no quota taken


def test_gangs_that_fit_some_pool_are_accepted_and_offered_only_those_pools(api, admin, fleet):
    assert api.post("/api/v1/jobs", json=job("pack-ok", workers=2, placementStrategy="STRICT_PACK",
                                              resourcesPerWorker={"nvidia.com/gpu": 4}, accelerator="nvidia-h100-80gb"),
                    headers=admin).status_code == 201
    assert api.post("/api/v1/jobs", json=job("tpu-ok", workers=2, **TPU), headers=admin).status_code == 201
    # CPU-only work goes to CPU-only pools: the cpu pool has one host, so 3 STRICT_SPREAD workers never fit.
    r = api.post("/api/v1/jobs", json=job("cpu3", workers=3, placementStrategy="STRICT_SPREAD",
                                          resourcesPerWorker={"cpu": "1"}), headers=admin)
    assert r.status_code == 422 and "flavor 'cpu'" in r.text
    ok = fleet.store.get("TrainJob", "pack-ok").doc
    assert placement_flavors(fleet.config, ok) == ("h100-reserved",)


def test_a_service_replica_wider_than_every_pool_is_refused(api, admin):
    r = api.post("/api/v1/services", headers=admin, json={"metadata": {"name": "wide"}, "spec": {
        "importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a",
        "replicaGroup": {"hostsPerReplica": 3, "resourcesPerHost": {"nvidia.com/gpu": 8}}}})
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == ["spec.replicaGroup.hostsPerReplica"]


RAY = [
    ("strict-pack", {"entrypoint_num_gpus": 8, "metadata": {"queue": "team-a", "workers": 2, "placement": "STRICT_PACK",
                                                             "accelerator": "nvidia-h100-80gb"}},
     "metadata.placement", "STRICT_PACK puts all 2 workers on one host"),
    ("too-many-hosts", {"entrypoint_num_gpus": 8, "entrypoint_resources": {"accelerator_type:H100": 1},
                        "metadata": {"queue": "team-a", "workers": 3}},
     "metadata.workers", "need 3 hosts"),
    ("tpu-slices", {"entrypoint_resources": {"TPU": 4}, "metadata": {"queue": "team-a", "workers": 3, "accelerator": "tpu-v5-lite-podslice"}},
     "metadata.workers", "one slice"),
    ("worker-too-big", {"entrypoint_num_gpus": 8, "entrypoint_memory": 4 * 2**40,
                        "metadata": {"queue": "team-a", "accelerator": "nvidia-h100-80gb"}},
     "entrypoint_num_gpus", "no flavor whose hosts offer"),
]


@pytest.mark.parametrize("name,body,field,fragment", RAY, ids=[c[0] for c in RAY])
def test_ray_jobs_api_answers_the_same_refusal(api, team_a, fleet, name, body, field, fragment):
    r = api.post("/api/jobs/", json={"entrypoint": "python train.py", "submission_id": f"raysubmit_{name}", **body}, headers=team_a)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("text/plain")   # what `ray job submit` prints
    assert r.text.startswith(f"{field}: ") and fragment in r.text
    assert fleet.store.find("TrainJob", f"raysubmit_{name}") is None


@pytest.mark.parametrize("ours,theirs", [
    ("metadata.name", "submission_id"),
    ("spec.queue", "metadata.queue"),
    ("spec.priorityClass", "metadata.priority"),
    ("spec.gang.workers", "metadata.workers"),
    ("spec.gang.accelerator", "metadata.accelerator"),
    ("spec.gang.placementStrategy", "metadata.placement"),
    ("spec.runtimeEnv.pip[0]", "runtime_env.pip[0]"),
    ("spec.failurePolicy.maxRestarts", "metadata.maxRestarts"),
    ("spec.gang.resourcesPerWorker.nvidia.com/gpu", "entrypoint_resources.nvidia.com/gpu"),
    ("spec.entrypoint", "entrypoint"),
    ("spec.labels.team", "metadata.team"),
])
def test_request_field_names_the_ray_request_field(ours, theirs):
    assert request_field(ours, {"entrypoint_resources": {"GPU": 1}}) == theirs


def test_resources_are_named_by_the_request_field_that_set_them():
    assert request_field("spec.gang.resourcesPerWorker", {"entrypoint_num_cpus": 2}) == "entrypoint_num_cpus"
    assert request_field("spec.gang.resourcesPerWorker", {"entrypoint_num_gpus": 1, "entrypoint_num_cpus": 2}) == "entrypoint_num_gpus"
    assert request_field("spec.gang.resourcesPerWorker", {}) == "entrypoint_resources"
    assert request_field("spec.queueing", {}) == "spec.queueing"  # a prefix of a name is not that name
