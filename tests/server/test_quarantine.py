"""A stored record always decodes; one that does not (an older version, a hand edit) is quarantined
with an event and an admin-visible entry, and start-up and the controller go on with the rest.
On both engines (``store_target``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from databases import connect
from fastapi.testclient import TestClient

from rayfleet.api import Service, TrainJob
from rayfleet.backends import make_backend
from rayfleet.config import load_config
from rayfleet.server.app import create_app
from rayfleet.server.auth import Principal
from rayfleet.server.main import assemble
from rayfleet.server.store import Quarantined
from rayfleet.server.tokens import ensure_tokens

LOCAL = Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"
NOW = 3_000_000.0
TEAM_A = Principal(team="team-a", admin=False)


def build(data_dir: Path, store: str | Path):
    cfg = load_config([LOCAL])
    return assemble(cfg, make_backend(cfg, data_dir), data_dir, clock=lambda: NOW, store=str(store),
                    elect=False)   # (the test runs the controller's passes itself)


def svc(name: str) -> Service:
    return Service.model_validate({"metadata": {"name": name}, "spec": {"importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a"}})


def job(name: str) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": "team-a"}})


def write_bad_rows(store: str | Path, good_service_body: str) -> None:
    """Hand edits straight into the database: a Service whose autoscaling.targetOngoingRequests is
    null (the issue's case), and a TrainJob with a field this version does not know."""
    bad = json.loads(good_service_body)
    bad["metadata"]["name"], bad["metadata"]["uid"] = "broken", "4d5e6f70-0000-4000-8000-000000000001"
    bad["spec"]["autoscaling"]["targetOngoingRequests"] = None
    bad["status"]["state"] = "RUNNING"
    db = connect(store)
    db.execute("INSERT INTO objects (kind, name, team, state, body, resource_version, created_at, updated_at, seq, uid) "
               "VALUES ('Service', 'broken', 'team-a', 'RUNNING', ?, 3, 1, 1, 99, ?)", (json.dumps(bad), bad["metadata"]["uid"]))
    old = json.loads(job("old").model_dump_json(by_alias=True))
    old["status"]["state"], old["status"]["fromTheFuture"] = "RUNNING", 1
    db.execute("INSERT INTO objects (kind, name, team, state, body, resource_version, created_at, updated_at, seq, uid) "
               "VALUES ('TrainJob', 'old', 'team-a', 'RUNNING', ?, 1, 1, 1, 99, NULL)", (json.dumps(old),))
    db.close()


@pytest.fixture
def broken_store(tmp_path, store_target):
    fleet = build(tmp_path, store_target)
    fleet.deploy_service(svc("good-svc"), TEAM_A)
    fleet.submit_job(job("good-job"), TEAM_A)
    body = fleet.store._q("SELECT body FROM objects WHERE kind='Service' AND name='good-svc'")[0][0]
    fleet.close()
    write_bad_rows(store_target, body)
    return tmp_path, store_target


def test_start_up_and_controller_passes_go_on(broken_store):
    fleet = build(*broken_store)  # the controller restores quota from the store: must not raise
    try:
        fleet.controller.run_once(NOW + 1)
        fleet.controller.run_once(NOW + 2)
        q = {(r.kind, r.name): r for r in fleet.store.quarantined()}
        assert set(q) == {("Service", "broken"), ("TrainJob", "old")}
        assert '"targetOngoingRequests":null' in q[("Service", "broken")].body.replace(" ", "")
        assert "targetOngoingRequests" in q[("Service", "broken")].error and q[("Service", "broken")].state == "RUNNING"
        assert [e.type for e in fleet.store.events("Service", "broken")] == ["Quarantined"]
        # every other record moved on: the good job and service were admitted
        assert "Admitted" in [e.type for e in fleet.store.events("TrainJob", "good-job")]
        assert fleet.store.get("Service", "good-svc").doc.status.state.value != "PENDING"
        assert [r.name for r in fleet.store.list("Service")] == ["good-svc"]
        with pytest.raises(Quarantined):
            fleet.store.get("Service", "broken")
    finally:
        fleet.close()


def test_quarantined_records_over_http(broken_store):
    fleet = build(*broken_store)
    creds = ensure_tokens(fleet.store, fleet.config)
    team = {"Authorization": f"Bearer {creds['teams']['team-a']}"}
    admin = {"Authorization": f"Bearer {creds['admin']}"}
    try:
        with TestClient(create_app(fleet, start_controller=False)) as api:
            assert [s["metadata"]["name"] for s in api.get("/api/v1/services", headers=team).json()] == ["good-svc"]
            r = api.get("/api/v1/services/broken", headers=team)
            assert r.status_code == 409 and "quarantined" in r.json()["message"]
            assert api.delete("/api/v1/services/broken", headers=team).status_code == 409
            assert api.get("/api/v1/jobs/old", headers=team).status_code == 409
            assert api.get("/api/v1/quarantine", headers=team).status_code == 403
            listed = api.get("/api/v1/quarantine", headers=admin)
            assert listed.status_code == 200
            assert {(q["kind"], q["name"]) for q in listed.json()} == {("Service", "broken"), ("TrainJob", "old")}
            assert all(q["body"] and q["error"] for q in listed.json())
            # the name is free again: a new deployment under it is a new object
            new = {"metadata": {"name": "broken"}, "spec": {"importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a"}}
            r = api.post("/api/v1/services", json=new, headers=team)
            assert r.status_code == 201 and r.json()["metadata"]["uid"] != "4d5e6f70-0000-4000-8000-000000000001"
            assert [e["type"] for e in api.get("/api/v1/services/broken/events", headers=team).json()] == ["Submitted"]
    finally:
        fleet.close()


def test_a_row_broken_under_a_running_service_is_quarantined_on_first_read(tmp_path, store_target):
    fleet = build(tmp_path, store_target)
    try:
        fleet.deploy_service(svc("s1"), TEAM_A)
        db = connect(store_target)
        db.execute("UPDATE objects SET body = replace(body, '\"targetOngoingRequests\":2.0', '\"targetOngoingRequests\":null') "
                   "WHERE name='s1'")
        db.close()
        with pytest.raises(Quarantined):
            fleet.get_service("s1", TEAM_A)
        assert fleet.store.list("Service") == [] and [r.name for r in fleet.store.quarantined("Service")] == ["s1"]
        fleet.controller.run_once(NOW + 1)
    finally:
        fleet.close()
