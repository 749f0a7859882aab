"""What a job can reach on the local backend (docs/security.md): run as root, rayfleet starts the
cluster as the unprivileged ``rayfleet-ray``; a team's job (real Ray) runs as that user and cannot
read the service's store, its logs or any API token; the Ray dashboard refuses it without the
cluster token."""

from __future__ import annotations

import json
import os
import pwd
import shlex

import pytest

from rayfleet.backends.local_user import RAY_USER

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="the cluster runs as another user only when rayfleet runs as root")]

PROBE = """
import json, os, sys
out = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups()}
for name, path in json.loads(sys.argv[1]).items():
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        out[name] = "read"
    except OSError as e:
        out[name] = type(e).__name__
print("PROBE " + json.dumps(out), flush=True)
"""


def test_a_job_runs_as_the_ray_user_and_reads_no_secret_of_the_service(fleet_service):
    data = fleet_service.data_dir
    targets = {
        "store": str(data / "rayfleet.db"),
        "data_dir": str(data),
        "service_log": str(fleet_service.log),
        "service_logs_dir": str(data / "logs"),
        "operators_credentials": str(fleet_service.credentials),
        "backend_state": str(data / "ray" / "cluster.json"),
    }
    assert all(os.path.exists(p) for p in targets.values())  # each one is there to be read
    entrypoint = f"python -c {shlex.quote(PROBE)} {shlex.quote(json.dumps(targets))}"
    with fleet_service.client("team-a") as c:
        r = c.post("/api/v1/jobs", json={"metadata": {"name": "probe-secrets"},
                                         "spec": {"queue": "team-a", "entrypoint": entrypoint, "gang": {"workers": 1, "resourcesPerWorker": {"cpu": "500m"}}}})
        assert r.status_code == 201, r.text
        job = fleet_service.wait_state("probe-secrets", {"SUCCEEDED", "FAILED"}, team="team-a")
        logs = c.get("/api/v1/jobs/probe-secrets/logs").text
    assert job["status"]["state"] == "SUCCEEDED", logs[-3000:]
    line = next(ln for ln in logs.splitlines() if ln.startswith("PROBE "))
    seen = json.loads(line[len("PROBE "):])
    ray_user = pwd.getpwnam(RAY_USER)
    assert seen["uid"] == seen["euid"] == ray_user.pw_uid != 0
    assert 0 not in seen["groups"]
    for name in targets:
        assert seen[name] == "PermissionError", (name, seen)
    # the operator's file is 0600 and the data directory 0700, root's
    assert (os.stat(fleet_service.credentials).st_mode & 0o777) == 0o600
    assert (os.stat(data).st_mode & 0o777) == 0o700
