"""The endpoints that answer without a team's token say as little as they can: /metrics needs an
admin token unless the service runs with --metrics-public; /healthz says ok, or unhealthy and why
in one word, never the error text."""

from __future__ import annotations

from fastapi.testclient import TestClient

from rayfleet.server.app import create_app


def test_metrics_need_an_admin_token(api, admin, team_a):
    api.post("/api/v1/jobs", json={"metadata": {"name": "secret-job"}, "spec": {"entrypoint": "x", "queue": "team-a"}},
             headers=team_a)
    anonymous = api.get("/metrics")
    assert anonymous.status_code == 401 and "team-a" not in anonymous.text and "secret-job" not in anonymous.text
    assert api.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    teamed = api.get("/metrics", headers=team_a)
    assert teamed.status_code == 403 and "admin token" in teamed.json()["message"]
    scraped = api.get("/metrics", headers=admin)  # Prometheus: authorization: {type: Bearer, credentials: <admin token>}
    assert scraped.status_code == 200 and 'rayfleet_jobs{queue="team-a",state="QUEUED"} 1.0' in scraped.text
    assert 'rayfleet_leader{role="single"} 1.0' in scraped.text   # one service alone runs its controller


def test_metrics_public_when_the_service_says_so(fleet):
    with TestClient(create_app(fleet, start_controller=False, metrics_public=True)) as api:
        r = api.get("/metrics")
        assert r.status_code == 200 and "rayfleet_queue_pending_workloads" in r.text


def test_healthz_says_why_in_one_word_and_keeps_the_error_for_the_log(api, fleet):
    assert api.get("/healthz").json() == {"status": "ok", "role": "single"}
    # what the controller loop records when a pass fails, by the exception's type
    for error, reason in (("BackendError: ray://10.0.0.7:10001 refused: token=abc", "backend"),
                          ("KeyError: 'team-secret'", "controller"),
                          ("StorageUnavailable: storage unavailable (full): /data/rayfleet.db", "storage")):
        fleet.controller.last_error = error
        r = api.get("/healthz")
        assert (r.status_code, r.json()) == (503, {"status": "unhealthy", "reason": reason, "role": "single"})
        assert error.split(": ", 1)[1] not in r.text
    fleet.controller.last_error = None
    assert api.get("/healthz").status_code == 200
