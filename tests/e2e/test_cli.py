"""The rayfleet CLI against a running service: job submit/list/status/logs/stop, queue list/show,
service list, with exit code 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def rayfleet_cli(svc, *args, team="team-a"):
    env = {**os.environ, "RAYFLEET_URL": svc.url, "RAYFLEET_TOKEN": svc.token(team)}
    return subprocess.run([sys.executable, "-m", "rayfleet.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def test_job_and_queue_commands(fleet_service):
    r = rayfleet_cli(fleet_service, "job", "submit", "--name", "cli-job", "--queue", "team-a", "--cpus", "0.5",
                     "--", "python", "-c", "'import time; print(\"cli says hi\", flush=True); time.sleep(120)'")
    assert r.returncode == 0, r.stderr
    assert "submitted cli-job" in r.stdout
    fleet_service.wait_state("cli-job", {"RUNNING"}, team="team-a")
    listed = rayfleet_cli(fleet_service, "job", "list", "--json")
    assert any(j["metadata"]["name"] == "cli-job" for j in json.loads(listed.stdout))
    status = rayfleet_cli(fleet_service, "job", "status", "cli-job")
    assert "RUNNING" in status.stdout and "cpu / cpu" in status.stdout
    queues = rayfleet_cli(fleet_service, "queue", "show", "team-a", "--json")
    assert "cli-job" in json.loads(queues.stdout)["status"]["admittedWorkloads"]
    assert rayfleet_cli(fleet_service, "queue", "list").returncode == 0
    denied = rayfleet_cli(fleet_service, "job", "stop", "cli-job", team="team-b")
    assert denied.returncode == 2 and "not found" in denied.stderr  # another team's job reads as missing
    stop = rayfleet_cli(fleet_service, "job", "stop", "cli-job")
    assert stop.returncode == 0, stop.stderr
    fleet_service.wait_state("cli-job", {"STOPPED"}, team="team-a")
    logs = rayfleet_cli(fleet_service, "job", "logs", "cli-job")
    assert "cli says hi" in logs.stdout
    assert rayfleet_cli(fleet_service, "service", "list").returncode == 0


def test_bad_input_exits_2_naming_the_field(fleet_service):
    r = rayfleet_cli(fleet_service, "job", "submit", "--queue", "team-z", "--", "true")
    assert r.returncode == 2 and "spec.queue" in r.stderr and "unknown queue" in r.stderr
    r = rayfleet_cli(fleet_service, "job", "submit", "--queue", "team-a", "--workers", "0", "--", "true")
    assert r.returncode == 2 and "spec.gang.workers" in r.stderr
