"""The Ray Jobs API answers as Ray's does, checked with Ray 2.60's own CLI (``ray job ...``, run
in-process through click) and SDK against rayfleet served by a real uvicorn on a free port (no Ray
cluster: the controller is not running, so jobs stay queued)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from ray.dashboard.modules.job.cli import job_cli_group
from ray.job_submission import JobSubmissionClient

from rayfleet.api import JobState


@pytest.fixture(autouse=True)
def _no_ray_client_env(monkeypatch):
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)


def ray_job(url, token, *args):
    """``ray job ARGS --address URL`` as a user runs it; returns (exit code, what it printed or raised)."""
    cmd, rest = args[0], list(args[1:])
    headers = ["--headers", json.dumps({"Authorization": f"Bearer {token}"})] if token else []
    r = CliRunner().invoke(job_cli_group, [cmd, "--address", url, *headers, *rest])
    return r.exit_code, r.output + (str(r.exception) if r.exception and not isinstance(r.exception, SystemExit) else "")


def tok(fleet, team=None):
    return fleet.creds["teams"][team] if team else fleet.creds["admin"]


def submit(url, fleet, team="team-a", *args):
    return ray_job(url, tok(fleet, team), "submit", "--no-wait", *args, "--", "python", "-c", "print(1)")


def test_default_cli_submission_is_accepted(url, fleet):
    code, out = submit(url, fleet, "team-a", "--submission-id", "cli-1", "--metadata-json", '{"queue": "team-a"}')
    assert code == 0, out
    assert fleet.store.get("TrainJob", "cli-1").doc.status.state is JobState.QUEUED


def test_cli_messages_for_401_403_and_404(url, fleet):
    submit(url, fleet, "team-a", "--submission-id", "secret-1", "--metadata-json", '{"queue": "team-a"}')
    code, out = ray_job(url, None, "status", "secret-1")
    assert code != 0 and "Authentication required: rayfleet needs a bearer token" in out, out
    code, out = ray_job(url, "rf_not-a-token", "status", "secret-1")
    assert code != 0 and "Authentication failed: rayfleet does not know this token (unknown or revoked)" in out, out
    code, foreign = ray_job(url, tok(fleet, "team-b"), "status", "secret-1")
    assert code != 0 and "Request failed with status code 404: Job secret-1 does not exist." in foreign, foreign
    code, missing = ray_job(url, tok(fleet, "team-b"), "status", "secret-2")
    assert foreign.splitlines()[-1].replace("secret-1", "X") == missing.splitlines()[-1].replace("secret-2", "X")


def test_submitting_into_another_teams_queue_says_so_not_bad_token(url, fleet):
    code, out = submit(url, fleet, "team-b", "--metadata-json", '{"queue": "team-a"}')
    assert code != 0 and "Request failed with status code 400: team 'team-b' may not access queue 'team-a'" in out, out
    assert "Authentication" not in out


def test_logs_follow_of_an_unknown_or_foreign_job_says_it_does_not_exist(url, fleet):
    submit(url, fleet, "team-a", "--submission-id", "secret-1", "--metadata-json", '{"queue": "team-a"}')
    for team, name in (("team-a", "nope"), ("team-b", "secret-1")):
        code, out = ray_job(url, tok(fleet, team), "logs", "--follow", name)
        assert code != 0 and f"Job {name} does not exist" in out, out


def test_label_selector_is_refused_naming_the_field(url, fleet):
    code, out = submit(url, fleet, "team-a", "--entrypoint-label-selector", '{"ray.io/accelerator-type": "H100"}',
                       "--metadata-json", '{"queue": "team-a"}')
    assert code != 0 and "entrypoint_label_selector" in out and "cannot honour" in out, out
    assert fleet.store.list("TrainJob") == []


def test_job_details_as_ray_reports_them(url, fleet):
    client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {tok(fleet, 'team-a')}"})
    sid = client.submit_job(entrypoint="python -c 'print(1)'", submission_id="sdk-1", metadata={"queue": "team-a"})
    info = client.get_job_info(sid)
    assert info.runtime_env == {} and info.driver_exit_code is None and info.status == "PENDING"
    # what the controller records when the run ends well: Ray reports exit code 0 after success
    rec = fleet.store.get("TrainJob", sid)
    done = rec.doc.model_copy(deep=True)
    done.status.state = JobState.SUCCEEDED
    fleet.store.update(done, expected_version=rec.resource_version)
    assert client.get_job_info(sid).driver_exit_code == 0
    assert [j.driver_exit_code for j in client.list_jobs()] == [0]


def test_submission_id_wins_over_job_id_as_in_ray(api, team_a):
    """Ray 2.60 takes ``submission_id or job_id`` (job_agent.py, sdk.py): both given, submission_id is the id."""
    r = api.post("/api/jobs/", json={"entrypoint": "x", "submission_id": "sub-1", "job_id": "job-1",
                                     "metadata": {"queue": "team-a"}}, headers=team_a)
    assert r.status_code == 200 and r.json() == {"job_id": "sub-1", "submission_id": "sub-1"}
    r = api.post("/api/jobs/", json={"entrypoint": "x", "job_id": "job-2", "metadata": {"queue": "team-a"}}, headers=team_a)
    assert r.json() == {"job_id": "job-2", "submission_id": "job-2"}


def test_another_team_neither_lists_nor_stops_a_job(url, fleet):
    submit(url, fleet, "team-a", "--submission-id", "mine-1", "--metadata-json", '{"queue": "team-a"}')
    code, listed = ray_job(url, tok(fleet, "team-b"), "list")
    assert code == 0 and "mine-1" not in listed, listed
    code, out = ray_job(url, tok(fleet, "team-b"), "stop", "mine-1")
    assert code != 0 and "Job mine-1 does not exist" in out, out
    assert fleet.store.get("TrainJob", "mine-1").doc.status.state is JobState.QUEUED


def test_a_gang_no_pool_can_ever_hold_is_refused_naming_the_field(url, fleet):
    code, out = ray_job(url, tok(fleet, "team-a"), "submit", "--no-wait", "--entrypoint-num-gpus", "8",
                        "--metadata-json", '{"queue": "team-a", "workers": "3"}', "--", "true")
    assert code != 0 and "metadata.workers" in out and "can ever hold this gang" in out, out
    assert fleet.store.list("TrainJob") == []
