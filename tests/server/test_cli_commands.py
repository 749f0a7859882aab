"""The rayfleet CLI against a running control service: job submit/list/status/logs/stop, queue
list/show, service list, with exit code 2 on bad input.

The service is the real app over real HTTP (uvicorn in a thread) with its controller running, over
the simulated backend on the wall clock; the CLI runs in-process (typer's runner) with the same
environment a user sets (``RAYFLEET_URL``, ``RAYFLEET_TOKEN``). What the real `ray` CLI and real
Ray add is tested end to end in tests/e2e/test_ray_cli.py."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from http_server import serving
from typer.testing import CliRunner

from rayfleet.backends import make_backend
from rayfleet.cli import main
from rayfleet.config import load_config
from rayfleet.server.app import create_app
from rayfleet.server.main import assemble
from rayfleet.server.tokens import ensure_tokens

LOCAL = Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"


@pytest.fixture
def running(tmp_path):
    """(url, tokens) of the service with its controller running over the sim."""
    cfg = load_config([LOCAL])
    fleet = assemble(cfg, make_backend(cfg, tmp_path, kind="sim"), tmp_path, controller_interval=0.2)
    creds = ensure_tokens(fleet.store, cfg)
    try:
        with serving(create_app(fleet, start_controller=True)) as base:
            yield base, creds
    finally:
        fleet.close()


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def rayfleet_cli(running, *args: str, team: str = "team-a") -> Result:
    """``rayfleet ARGS`` as the console script runs it (``rayfleet.cli.main``: errors become exit 2 or 1)."""
    url, creds = running
    runner = CliRunner()
    with runner.isolation(env={"RAYFLEET_URL": url, "RAYFLEET_TOKEN": creds["teams"][team]}) as streams, \
            mock_argv(["rayfleet", *args]):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0], streams[1]
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


@contextmanager
def mock_argv(argv: list[str]):
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def wait_state(running, name: str, state: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = rayfleet_cli(running, "job", "status", name, "--json")
        assert r.exit_code == 0, r.output
        job = json.loads(r.stdout)
        if job["status"]["state"] == state:
            return job
        assert time.monotonic() < deadline, job["status"]
        time.sleep(0.1)


def test_job_and_queue_commands(running):
    r = rayfleet_cli(running, "job", "submit", "--name", "cli-job", "--queue", "team-a", "--cpus", "0.5",
                     "--", "python", "-c", "'import time; time.sleep(120)'")
    assert r.exit_code == 0, r.output
    assert "submitted cli-job" in r.stdout
    wait_state(running, "cli-job", "RUNNING")
    listed = rayfleet_cli(running, "job", "list", "--json")
    assert any(j["metadata"]["name"] == "cli-job" for j in json.loads(listed.stdout))
    status = rayfleet_cli(running, "job", "status", "cli-job")
    assert "RUNNING" in status.stdout and "cpu / cpu" in status.stdout
    queues = rayfleet_cli(running, "queue", "show", "team-a", "--json")
    assert "cli-job" in json.loads(queues.stdout)["status"]["admittedWorkloads"]
    assert rayfleet_cli(running, "queue", "list").exit_code == 0
    denied = rayfleet_cli(running, "job", "stop", "cli-job", team="team-b")
    assert denied.exit_code == 2 and "not found" in denied.output  # another team's job reads as missing
    stop = rayfleet_cli(running, "job", "stop", "cli-job")
    assert stop.exit_code == 0, stop.output
    wait_state(running, "cli-job", "STOPPED")
    logs = rayfleet_cli(running, "job", "logs", "cli-job")
    assert logs.exit_code == 0 and logs.stdout.strip(), logs.output
    assert rayfleet_cli(running, "service", "list").exit_code == 0


def test_bad_input_exits_2_naming_the_field(running):
    r = rayfleet_cli(running, "job", "submit", "--queue", "team-z", "--", "true")
    assert r.exit_code == 2 and "spec.queue" in r.output and "unknown queue" in r.output
    r = rayfleet_cli(running, "job", "submit", "--queue", "team-a", "--workers", "0", "--", "true")
    assert r.exit_code == 2 and "spec.gang.workers" in r.output
