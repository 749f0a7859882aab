"""Identity that is never reused: every accepted object gets a server-set uid; run ids, logs, events
and checkpoints hang off it, so a new job with an old name starts clean (REST and Ray Jobs API)."""

from __future__ import annotations

from pathlib import Path

from rayfleet.backends.base import RunState, RunStatus, checkpoint_key, run_id_for
from rayfleet.server import transitions as tr

NOW = 2_000_000.0


def rest_job(name: str, queue: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": queue}}


def run_to_success(fleet, name: str, log_text: str) -> str:
    """What the controller leaves of an attempt that ran and succeeded: status and events in the
    store, the saved log, and the backend's own final record of the run. Returns the run id."""
    job = fleet.store.get("TrainJob", name).doc
    for t in (tr.admitted(job, "cpu-default", "cpu", {}),):
        job = job.model_copy(update={"status": t.status})
        fleet.store.update(job, event=t.event, message=t.message, data=t.data, now=NOW)
    run_id = job.status.ray_job_id
    for t in (tr.launched(job, run_id, NOW + 1), tr.observe(job, RunStatus(run_id, RunState.RUNNING, started_at=NOW + 2), NOW + 2)):
        job = job.model_copy(update={"status": t.status})
        fleet.store.update(job, event=t.event, message=t.message, data=t.data, now=NOW + 2)
    t = tr.observe(job, RunStatus(run_id, RunState.SUCCEEDED, finished_at=NOW + 3), NOW + 3)
    job = job.model_copy(update={"status": t.status})
    fleet.store.update(job, event=t.event, message=t.message, data=t.data, now=NOW + 3)
    legacy = fleet.layout.log_path(job, 1)   # a log file as a data directory from before store migration 9 kept it
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_text(log_text)
    fleet.backend.run_dir(run_id).mark("final", run_id=run_id, state="SUCCEEDED", message="team B's run")
    assert fleet.backend.run_status(run_id).state == RunState.SUCCEEDED
    return run_id


def test_delete_and_resubmit_under_the_same_name_starts_clean_rest(api, fleet, team_a, team_b):
    r = api.post("/api/v1/jobs", json=rest_job("b-job-1", "team-b"), headers=team_b)
    assert r.status_code == 201
    old_uid = r.json()["metadata"]["uid"]
    old_run = run_to_success(fleet, "b-job-1", "team B secret\n")
    assert "team B secret" in api.get("/api/v1/jobs/b-job-1/logs", headers=team_b).text
    assert api.delete("/api/jobs/b-job-1", headers=team_b).status_code == 200

    r = api.post("/api/v1/jobs", json=rest_job("b-job-1", "team-a"), headers=team_a)
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["metadata"]["uid"] and new["metadata"]["uid"] != old_uid and new["status"]["state"] == "QUEUED"
    assert api.get("/api/v1/jobs/b-job-1/logs", headers=team_a).text == ""
    assert [e["type"] for e in api.get("/api/v1/jobs/b-job-1/events", headers=team_a).json()] == ["Submitted"]
    assert api.get("/api/jobs/b-job-1/logs", headers=team_a).json() == {"logs": ""}

    # A controller pass admits the new job on a fresh run id: the old run's SUCCEEDED record is not its own.
    fleet.controller.run_once(NOW + 100)
    job = fleet.store.get("TrainJob", "b-job-1").doc
    assert job.status.ray_job_id == run_id_for("b-job-1", 1, new["metadata"]["uid"]) != old_run
    assert job.status.state != job.status.state.SUCCEEDED
    assert fleet.backend.run_status(old_run).state == RunState.SUCCEEDED  # still there, never reached
    assert "team B secret" not in api.get("/api/v1/jobs/b-job-1/logs", headers=team_a).text
    types = [e["type"] for e in api.get("/api/v1/jobs/b-job-1/events", headers=team_a).json()]
    assert types[:2] == ["Submitted", "Admitted"] and "Succeeded" not in types
    # checkpoints: the backend's default directory hangs off the uid too
    req = fleet.controller.launch_request(job)
    assert req.checkpoint_dir is None and req.uid == new["metadata"]["uid"]
    assert checkpoint_key(req.job_id, req.uid) == f"b-job-1/{new['metadata']['uid']}"


def test_delete_and_resubmit_under_the_same_name_starts_clean_ray_jobs_api(api, fleet, team_a, team_b):
    body = {"entrypoint": "python train.py", "submission_id": "b-job-1"}
    assert api.post("/api/jobs/", json={**body, "metadata": {"queue": "team-b"}}, headers=team_b).status_code == 200
    run_to_success(fleet, "b-job-1", "team B secret\n")
    assert api.get("/api/jobs/b-job-1", headers=team_b).json()["status"] == "SUCCEEDED"
    assert api.delete("/api/jobs/b-job-1", headers=team_b).status_code == 200

    r = api.post("/api/jobs/", json=body, headers=team_a)  # team A's default queue
    assert r.status_code == 200 and r.json()["submission_id"] == "b-job-1"
    assert api.get("/api/jobs/b-job-1", headers=team_a).json()["status"] == "PENDING"
    assert api.get("/api/jobs/b-job-1/logs", headers=team_a).json() == {"logs": ""}
    assert [e["type"] for e in api.get("/api/v1/jobs/b-job-1/events", headers=team_a).json()] == ["Submitted"]
    assert api.get("/api/jobs/b-job-1", headers=team_b).status_code == 404  # another team's job reads as missing


def test_uid_is_server_set(api, team_a):
    body = rest_job("j1", "team-a")
    body["metadata"]["uid"] = "mine"
    r = api.post("/api/v1/jobs", json=body, headers=team_a)
    assert r.status_code == 422 and r.json()["field"] == "metadata.uid"
    svc = {"metadata": {"name": "chat", "uid": "mine"}, "spec": {"importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a"}}
    r = api.post("/api/v1/services", json=svc, headers=team_a)
    assert r.status_code == 422 and r.json()["field"] == "metadata.uid"


def test_idempotent_resubmission_is_200_and_keeps_the_uid(api, team_a):
    first = api.post("/api/v1/jobs", json=rest_job("j1", "team-a"), headers=team_a)
    again = api.post("/api/v1/jobs", json=rest_job("j1", "team-a"), headers=team_a)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["metadata"]["uid"] == first.json()["metadata"]["uid"]
    svc = {"metadata": {"name": "chat"}, "spec": {"importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a"}}
    s1, s2 = (api.post("/api/v1/services", json=svc, headers=team_a) for _ in range(2))
    assert (s1.status_code, s2.status_code) == (201, 200) and s1.json()["metadata"]["uid"] == s2.json()["metadata"]["uid"]


def test_a_controller_pass_reads_no_clock_and_backs_off_from_now(tmp_path):
    """The pass takes ``now``: every write is stamped with it, and the backoff after a failed launch
    (the local cluster is down) is counted from it."""
    from rayfleet.api import TrainJob
    from rayfleet.backends import make_backend
    from rayfleet.config import load_config
    from rayfleet.server.auth import Principal
    from rayfleet.server.main import assemble

    reads: list[float] = []

    def clock() -> float:
        reads.append(1.0)
        return NOW

    cfg = load_config([Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"])
    fleet = assemble(cfg, make_backend(cfg, tmp_path), tmp_path, clock=clock)
    try:
        fleet.submit_job(TrainJob.model_validate(rest_job("j1", "team-a")), Principal(team="team-a", admin=False))
        reads.clear()
        fleet.controller.run_once(NOW + 100)
        assert reads == []
        job = fleet.store.get("TrainJob", "j1").doc
        events = fleet.store.events("TrainJob", "j1", uid=job.metadata.uid)
        assert [e.type for e in events] == ["Submitted", "Admitted", "Requeued"]
        assert [e.ts for e in events[1:]] == [NOW + 100, NOW + 100]
        assert job.status.disruptions == 1 and job.status.restarts == 0
        assert job.status.not_before.timestamp() == NOW + 110
        fleet.controller.run_once(NOW + 105)  # backing off: quota does not consider it
        assert [e.type for e in fleet.store.events("TrainJob", "j1")][-1] == "Requeued"
        fleet.controller.run_once(NOW + 111)
        assert [e.type for e in fleet.store.events("TrainJob", "j1")][-2:] == ["Admitted", "Requeued"]
        assert fleet.store.get("TrainJob", "j1").doc.status.disruptions == 2 and reads == []
    finally:
        fleet.close()
