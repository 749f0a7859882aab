"""REST and Ray Jobs API: auth, tenancy, idempotency, and bad input that always gets a 4xx naming the field."""

from __future__ import annotations

import pytest

from rayfleet.errors import BackendError


def job(name="j1", queue="team-a", **spec):
    body = {"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": queue}}
    body["spec"].update(spec)
    return body


def fields(resp):
    return {p["field"] for p in resp.json()["problems"]}


def test_auth_401_and_403(api, team_a, team_b):
    assert api.get("/api/v1/jobs").status_code == 401
    assert api.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = api.post("/api/v1/jobs", json=job(queue="team-b"), headers=team_a)
    assert r.status_code == 403 and "team-b" in r.json()["message"]
    assert api.post("/api/v1/jobs", json=job(queue="team-b"), headers=team_b).status_code == 201


def test_ray_cli_token_header_is_accepted(api, fleet):
    tok = fleet.creds["teams"]["team-a"]
    r = api.get("/api/jobs/", headers={"X-Ray-Authorization": f"Bearer {tok}"})
    assert r.status_code == 200


def test_submit_is_idempotent_per_id(api, team_a):
    r1 = api.post("/api/v1/jobs", json=job(), headers=team_a)
    assert r1.status_code == 201 and r1.json()["status"]["state"] == "QUEUED"
    r2 = api.post("/api/v1/jobs", json=job(), headers=team_a)
    assert r2.status_code == 200 and r2.json()["metadata"]["resourceVersion"] == r1.json()["metadata"]["resourceVersion"]
    r3 = api.post("/api/v1/jobs", json=job(entrypoint="python other.py"), headers=team_a)
    assert r3.status_code == 409 and r3.json()["field"] == "metadata.name"


def test_cross_team_get_stop_list(api, team_a, team_b, admin):
    api.post("/api/v1/jobs", json=job("a1"), headers=team_a)
    api.post("/api/v1/jobs", json=job("b1", queue="team-b"), headers=team_b)
    # another team's job is answered exactly as a missing one (see test_tenancy.py for every route)
    assert api.get("/api/v1/jobs/a1", headers=team_b).status_code == 404
    assert api.post("/api/v1/jobs/a1/stop", headers=team_b).status_code == 404
    assert api.get("/api/v1/jobs/a1/logs", headers=team_b).status_code == 404
    assert [j["metadata"]["name"] for j in api.get("/api/v1/jobs", headers=team_b).json()["items"]] == ["b1"]
    assert {j["metadata"]["name"] for j in api.get("/api/v1/jobs", headers=admin).json()["items"]} == {"a1", "b1"}
    assert api.get("/api/v1/jobs", params={"team": "team-a"}, headers=team_b).status_code == 403
    # Ray Jobs API view is filtered the same way
    assert [j["submission_id"] for j in api.get("/api/jobs/", headers=team_b).json()] == ["b1"]
    r = api.post("/api/jobs/a1/stop", headers=team_b)
    assert (r.status_code, r.text) == (404, "Job a1 does not exist")
    # a queued job stops at once
    r = api.post("/api/v1/jobs/a1/stop", headers=team_a)
    assert r.status_code == 200 and r.json()["status"]["state"] == "STOPPED"


def test_paging_and_filters(api, team_a):
    for i in range(5):
        api.post("/api/v1/jobs", json=job(f"p{i}"), headers=team_a)
    p1 = api.get("/api/v1/jobs", params={"limit": 2}, headers=team_a).json()
    p2 = api.get("/api/v1/jobs", params={"limit": 2, "cursor": p1["next"]}, headers=team_a).json()
    p3 = api.get("/api/v1/jobs", params={"limit": 2, "cursor": p2["next"]}, headers=team_a).json()
    assert [j["metadata"]["name"] for j in p1["items"] + p2["items"] + p3["items"]] == [f"p{i}" for i in range(5)]
    assert p3["next"] is None
    assert api.get("/api/v1/jobs", params={"state": "RUNNING"}, headers=team_a).json()["items"] == []
    assert api.get("/api/v1/jobs", params={"state": "BOGUS"}, headers=team_a).status_code == 422


BAD = [
    ("unknown-queue", job(queue="team-z"), "spec.queue", "unknown queue"),
    ("unknown-priority", job(priorityClass="urgent"), "spec.priorityClass", "unknown priority class"),
    ("gang-too-big", job(gang={"workers": 3, "resourcesPerWorker": {"nvidia.com/gpu": 8}, "accelerator": "nvidia-h100-80gb"}),
     "spec.gang.workers", "need 3 hosts"),
    ("negative-resource", job(gang={"resourcesPerWorker": {"cpu": -1}}), "spec.gang.resourcesPerWorker", "negative"),
    ("unknown-resource", job(gang={"resourcesPerWorker": {"amd.com/gpu": 1}}), "spec.gang.resourcesPerWorker", "unknown resource"),
    ("unknown-field", job(gpus=8), "spec.gpus", "unknown field"),
    ("no-program", {"metadata": {"name": "x"}, "spec": {"queue": "team-a"}}, "spec.entrypoint", "exactly one"),
    ("status-given", {**job(), "status": {"state": "RUNNING"}}, "status", "set by rayfleet"),
    ("bad-id", job(name="../etc"), "metadata.name", "letters, digits"),
    ("no-accelerator-pool", job(gang={"resourcesPerWorker": {"google.com/tpu": 4}, "accelerator": "tpu-v5p-slice"}),
     "spec.gang.resourcesPerWorker", "no flavor"),
    ("wrong-type", job(gang={"workers": "two"}), "spec.gang.workers", "integer"),
]


@pytest.mark.parametrize("name,body,field,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_submissions_get_422_naming_the_field(api, admin, name, body, field, fragment):
    r = api.post("/api/v1/jobs", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert field in fields(r), r.json()
    assert fragment in r.text


def test_malformed_json_is_422(api, admin):
    r = api.post("/api/v1/jobs", content=b"{not json", headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.text
    r = api.post("/api/jobs/", content=b"{not json", headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and "malformed JSON" in r.text


def test_ray_jobs_submit_maps_resources_and_metadata(api, fleet, team_a):
    r = api.post("/api/jobs/", json={"entrypoint": "python -c 'print(1)'", "submission_id": "raysubmit_Abc123",
                                     "entrypoint_num_cpus": 0.5, "entrypoint_resources": {"accelerator_type:H100": 1},
                                     "entrypoint_num_gpus": 8, "metadata": {"queue": "team-a", "priority": "production"}},
                 headers=team_a)
    assert r.status_code == 200, r.text
    assert r.json()["submission_id"] == "raysubmit_Abc123"
    stored = fleet.store.get("TrainJob", "raysubmit_Abc123").doc
    assert stored.spec.gang.resources_per_worker == {"cpu": 500, "nvidia.com/gpu": 8}
    assert stored.spec.gang.accelerator.value == "nvidia-h100-80gb"
    assert stored.spec.priority_class == "production"
    info = api.get("/api/jobs/raysubmit_Abc123", headers=team_a).json()
    assert info["status"] == "PENDING" and info["type"] == "SUBMISSION" and info["metadata"]["queue"] == "team-a"


@pytest.mark.parametrize("body,fragment", [
    ({"entrypoint": "x", "metadata": {"queue": "nope"}}, "metadata.queue"),
    ({"entrypoint": "x", "entrypoint_resources": {"FPGA": 1}}, "entrypoint_resources.FPGA"),
    ({"entrypoint": "x", "entrypoint_num_gpus": -1}, "entrypoint_num_gpus"),
    ({"entrypoint": "x", "metadata": {"workers": 5}, "entrypoint_num_gpus": 8}, "metadata.workers"),
    ({"entrypoint": "x", "surprise": 1}, "surprise"),
    ({}, "entrypoint"),
])
def test_ray_jobs_bad_requests_are_4xx_naming_the_field(api, team_a, body, fragment):
    r = api.post("/api/jobs/", json=body, headers=team_a)
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.text


def test_queue_view_and_pools(api, team_a, admin):
    api.post("/api/v1/jobs", json=job(), headers=team_a)
    queues = api.get("/api/v1/queues", headers=team_a).json()
    assert [q["metadata"]["name"] for q in queues] == ["team-a"]
    assert api.get("/api/v1/queues/team-b", headers=team_a).json() == api.get("/api/v1/queues/nope", headers=team_a).json() | {
        "message": "queue 'team-b' not found"}
    assert api.get("/api/v1/queues/team-b", headers=team_a).status_code == 404
    q = api.get("/api/v1/queues/team-a", headers=admin).json()
    assert q["status"]["nominal"]["h100-reserved"]["nvidia.com/gpu"] == 8
    pools = api.get("/api/v1/pools", headers=admin).json()
    assert {p["metadata"]["name"] for p in pools} == {"cpu", "h100", "l4-spot", "tpu-v5e"}
    assert {p["status"]["state"] for p in pools} == {"Pending"}  # the local cluster is not up here


def test_pools_say_why_capacity_is_unknown_when_the_backend_fails(api, admin, fleet, monkeypatch):
    def unreachable():
        raise BackendError("connection refused")

    monkeypatch.setattr(fleet.backend, "capacity", unreachable)
    r = api.get("/api/v1/pools", headers=admin)
    assert r.status_code == 200
    for pool in r.json():
        assert pool["status"]["message"] == "capacity unavailable from the local backend: connection refused"


def test_openapi_documents_both_apis(api):
    spec = api.get("/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"] and "/api/jobs/" in spec["paths"]
    assert spec["paths"]["/api/v1/jobs"]["post"]["summary"]
