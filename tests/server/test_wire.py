"""The typed wire layer: the OpenAPI document names the request and response models of the
submitted kinds, and the typed client (``rayfleet.connect``) round-trips a TrainJob and a Service
through a real uvicorn on a free port (no Ray: the controller is not running, jobs stay queued),
errors arriving as the classes ``rayfleet`` exports, with the field named."""

from __future__ import annotations

import pytest

import rayfleet
from rayfleet.api import JobState, ServiceState

REF = "#/components/schemas/"


def job_body(name: str = "wire-1", **spec) -> dict:
    return {"metadata": {"name": name, "labels": {"exp": "wire"}},
            "spec": {"entrypoint": "python train.py", "queue": "team-a",
                     "gang": {"workers": 2, "resourcesPerWorker": {"cpu": "1500m", "memory": "2Gi"}}, **spec}}


def service_body(name: str = "echo") -> dict:
    return {"metadata": {"name": name}, "spec": {"importPath": "serve_apps.echo:app", "queue": "team-a"}}


# ------------------------------------------------------------------ OpenAPI


@pytest.fixture
def openapi(api):
    return api.get("/openapi.json").json()


def _body_ref(op: dict) -> str:
    return op["requestBody"]["content"]["application/json"]["schema"]["$ref"]


def _answer_ref(op: dict, code: str) -> str:
    return op["responses"][code]["content"]["application/json"]["schema"]["$ref"]


def test_openapi_names_request_and_response_schemas(openapi):
    schemas = openapi["components"]["schemas"]
    for name in ("TrainJobSubmit", "TrainJobRecord", "ServiceSubmit", "ServiceRecord", "ErrorAnswer"):
        assert name in schemas, sorted(schemas)
    # a submitted body is metadata and spec: no status, unknown fields refused
    for submit in ("TrainJobSubmit", "ServiceSubmit"):
        assert set(schemas[submit]["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
        assert schemas[submit]["additionalProperties"] is False
        assert set(schemas[submit]["required"]) == {"metadata", "spec"}
    # an answer is the stored document with resourceVersion and team in its metadata
    for record, meta in (("TrainJobRecord", "StoredWorkloadMeta"), ("ServiceRecord", "StoredServiceMeta")):
        assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(schemas[record]["properties"])
        assert schemas[record]["properties"]["metadata"]["$ref"] == REF + meta
        assert {"name", "uid", "resourceVersion", "team"} <= set(schemas[meta]["properties"])
    paths = openapi["paths"]
    assert _body_ref(paths["/api/v1/jobs"]["post"]) == REF + "TrainJobSubmit"
    assert _body_ref(paths["/api/v1/services"]["post"]) == REF + "ServiceSubmit"
    for path, record in (("/api/v1/jobs", "TrainJobRecord"), ("/api/v1/services", "ServiceRecord")):
        assert _answer_ref(paths[path]["post"], "201") == REF + record
        assert _answer_ref(paths[path]["post"], "200") == REF + record
        assert _answer_ref(paths[path]["post"], "422") == REF + "ErrorAnswer"
    assert _answer_ref(paths["/api/v1/jobs/{name}"]["get"], "200") == REF + "TrainJobRecord"
    assert _answer_ref(paths["/api/v1/services/{name}"]["get"], "200") == REF + "ServiceRecord"
    assert _answer_ref(paths["/api/v1/jobs"]["get"], "200") == REF + "JobPage"
    # every POST of rayfleet's own API that takes a body names its schema
    posts = {p: ops["post"] for p, ops in paths.items() if p.startswith("/api/v1/") and "post" in ops}
    with_body = {p for p, op in posts.items() if "requestBody" in op}
    assert {"/api/v1/jobs", "/api/v1/services", "/api/v1/tokens"} <= with_body
    for p in with_body:
        assert _body_ref(posts[p]).startswith(REF), p


def test_answers_keep_the_wire_form(api, team_a, fleet):
    r = api.post("/api/v1/jobs", json=job_body(), headers=team_a)
    assert r.status_code == 201, r.text
    rec = fleet.store.get("TrainJob", "wire-1")
    expected = rec.doc.to_dict()
    expected["metadata"] |= {"resourceVersion": rec.resource_version, "team": "team-a"}
    assert r.json() == expected
    assert list(r.json()) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert "null" not in r.text  # unset optional fields are dropped, as Document.to_dict drops them
    assert r.json()["spec"]["gang"]["resourcesPerWorker"] == {"cpu": "1500m", "memory": "2Gi"}
    again = api.post("/api/v1/jobs", json=job_body(), headers=team_a)
    assert again.status_code == 200 and again.json() == r.json()
    assert api.get("/api/v1/jobs/wire-1", headers=team_a).json() == expected
    page = api.get("/api/v1/jobs", headers=team_a).json()
    assert page == {"items": [expected], "next": None}


@pytest.mark.parametrize("body,field,problem", [
    ({**job_body(), "status": {"state": "RUNNING"}}, "status", "status is set by rayfleet; submit metadata and spec only"),
    ([job_body()], "(body)", "expected a JSON object"),
    (job_body(gpus=8), "spec.gpus", "unknown field"),
    ({"metadata": {"name": "x"}}, "spec", "required field is missing"),
    (job_body(gang={"workers": 0}), "spec.gang.workers", "Input should be greater than or equal to 1"),
])
def test_typed_bodies_refuse_with_the_field_named(api, team_a, body, field, problem):
    r = api.post("/api/v1/jobs", json=body, headers=team_a)
    assert r.status_code == 422, r.text
    assert [(p["field"], p["problem"]) for p in r.json()["problems"]] == [(field, problem)]


# ------------------------------------------------------------------ the typed client over HTTP


def test_typed_client_round_trips_a_train_job(url, fleet):
    with rayfleet.connect(url, token=fleet.creds["teams"]["team-a"]) as client:
        sent = rayfleet.TrainJob.model_validate(job_body())
        handle = client.submit(sent)
        job = handle.job
        assert isinstance(job, rayfleet.TrainJobRecord) and isinstance(job, rayfleet.TrainJob)
        assert job.spec == sent.spec and job.metadata.labels == {"exp": "wire"}
        assert job.spec.gang.resources_per_worker == {"cpu": 1500, "memory": 2 * 2**30}
        assert job.status.state is JobState.QUEUED and job.metadata.team == "team-a"
        assert job.metadata.uid == fleet.store.get("TrainJob", "wire-1").doc.metadata.uid
        assert job.metadata.resource_version == fleet.store.get("TrainJob", "wire-1").resource_version
        assert client.job("wire-1").job == job
        listed = client.jobs(typed=True)
        assert listed == [job]
        assert client.jobs() == [job.to_dict()]  # the dict form the CLI uses is unchanged
        # a TrainJobSubmit is accepted too: same id and spec is the idempotent answer
        assert client.submit(rayfleet.TrainJobSubmit.model_validate(job_body())).job == job
        stopped = handle.stop()
        assert stopped["state"] == "STOPPED" and handle.job.status.state is JobState.STOPPED


def test_typed_client_round_trips_a_service(url, fleet):
    with rayfleet.connect(url, token=fleet.creds["teams"]["team-a"]) as client:
        handle = client.deploy(rayfleet.Service.model_validate(service_body()))
        svc = handle.service
        assert isinstance(svc, rayfleet.ServiceRecord) and svc.spec.import_path == "serve_apps.echo:app"
        assert svc.status.state is ServiceState.PENDING and svc.metadata.team == "team-a"
        assert client.service("echo").service == svc
        assert list(client.request("GET", "/api/v1/services/echo"))[:2] == ["apiVersion", "kind"]
        assert client.services(typed=True) == [svc]


def test_errors_arrive_as_the_exported_classes(url, fleet):
    with rayfleet.connect(url, token=fleet.creds["teams"]["team-a"]) as client:
        with pytest.raises(rayfleet.SpecError) as bad:
            client.submit(job_body(gpus=8))
        assert bad.value.field == "spec.gpus" and bad.value.problems == [rayfleet.FieldProblem(field="spec.gpus", problem="unknown field")]
        with pytest.raises(rayfleet.NotFound) as missing:
            client.job("nope")
        assert missing.value.field == "name"
        client.submit(job_body())
        with pytest.raises(rayfleet.Conflict) as differs:
            client.submit(job_body(entrypoint="python other.py"))
        assert differs.value.field == "metadata.name"
        with pytest.raises(rayfleet.Forbidden):
            client.submit(job_body("wire-2", queue="team-b"))
        assert all(issubclass(c, rayfleet.RayfleetError) for c in (rayfleet.SpecError, rayfleet.NotFound, rayfleet.Conflict,
                                                                     rayfleet.Forbidden, rayfleet.Unauthorized, rayfleet.BackendError,
                                                                     rayfleet.StorageUnavailable))
    with rayfleet.connect(url, token="rf_not-a-token") as stranger, pytest.raises(rayfleet.Unauthorized):
        stranger.jobs()
