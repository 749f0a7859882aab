"""Another team's object is answered exactly as a missing one, on both APIs and the websocket, so
a team cannot learn the names of other teams' jobs, services or queues by probing."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

SERVICE = {"metadata": {"name": "chat"}, "spec": {
    "importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a",
    "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"nvidia.com/gpu": 8}}}}

ROUTES = [  # (method, path with {name})
    ("GET", "/api/v1/jobs/{name}"),
    ("GET", "/api/v1/jobs/{name}/events"),
    ("GET", "/api/v1/jobs/{name}/logs"),
    ("POST", "/api/v1/jobs/{name}/stop"),
    ("GET", "/api/jobs/{name}"),
    ("GET", "/api/jobs/{name}/logs"),
    ("POST", "/api/jobs/{name}/stop"),
    ("DELETE", "/api/jobs/{name}"),
    ("GET", "/api/v1/services/{svc}"),
    ("GET", "/api/v1/services/{svc}/events"),
    ("DELETE", "/api/v1/services/{svc}"),
    ("GET", "/api/v1/queues/{queue}"),
]


@pytest.fixture
def owned(api, team_a):
    assert api.post("/api/v1/jobs", json={"metadata": {"name": "secret-1"}, "spec": {"entrypoint": "x", "queue": "team-a"}},
                    headers=team_a).status_code == 201
    assert api.post("/api/v1/services", json=SERVICE, headers=team_a).status_code == 201


def _answer(r):
    return r.status_code, r.headers.get("content-type"), r.text


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_foreign_object_is_answered_as_a_missing_one(api, owned, team_b, method, path):
    foreign = api.request(method, path.format(name="secret-1", svc="chat", queue="team-a"), headers=team_b)
    missing = api.request(method, path.format(name="secret-2", svc="chaz", queue="team-z"), headers=team_b)
    assert foreign.status_code == 404, foreign.text
    # the same answer, but for the name the caller asked about
    swap = {"secret-2": "secret-1", "chaz": "chat", "team-z": "team-a"}
    expected = missing.text
    for a, b in swap.items():
        expected = expected.replace(a, b)
    assert _answer(foreign) == (missing.status_code, missing.headers.get("content-type"), expected)
    assert "team-a" not in foreign.text or path.startswith("/api/v1/queues")


def test_the_owner_and_the_admin_still_reach_it(api, owned, team_a, admin):
    for headers in (team_a, admin):
        assert api.get("/api/v1/jobs/secret-1", headers=headers).status_code == 200
        assert api.get("/api/jobs/secret-1", headers=headers).status_code == 200
        assert api.get("/api/v1/services/chat", headers=headers).status_code == 200


def _close_of(api, path, headers):
    with api.websocket_connect(path, headers=headers) as ws:
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_text()
    return e.value.code, e.value.reason


def test_websocket_of_a_foreign_job_closes_as_a_missing_one(api, owned, team_b, fleet):
    assert _close_of(api, "/api/jobs/secret-1/logs/tail", team_b) == (4404, "Job secret-1 does not exist")
    assert _close_of(api, "/api/jobs/secret-2/logs/tail", team_b) == (4404, "Job secret-2 does not exist")
    assert _close_of(api, "/api/jobs/secret-1/logs/tail", {}) [0] == 4401
    assert _close_of(api, "/api/jobs/secret-1/logs/tail", {"Authorization": "Bearer nope"})[0] == 4403


def test_submitting_into_another_teams_queue_is_refused_naming_the_owner(api, team_b):
    """Queues are platform config (the config files name them and their teams): 403 on rayfleet's
    API; 400 on the Ray Jobs API, whose CLI would print a 403 as a bad token."""
    body = {"metadata": {"name": "intruder"}, "spec": {"entrypoint": "x", "queue": "team-a"}}
    r = api.post("/api/v1/jobs", json=body, headers=team_b)
    assert r.status_code == 403 and "owned by team 'team-a'" in r.json()["message"]
    r = api.post("/api/jobs/", json={"entrypoint": "x", "metadata": {"queue": "team-a"}}, headers=team_b)
    assert r.status_code == 400 and "may not access queue 'team-a'" in r.text


def test_a_foreign_queue_is_not_listed(api, team_b):
    assert [q["metadata"]["name"] for q in api.get("/api/v1/queues", headers=team_b).json()] == ["team-b"]
