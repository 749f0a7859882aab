"""The control service on a PostgreSQL store, as its own process (``rayfleet serve``, the store in
$RAYFLEET_STORE) on the simulated backend: what it accepted survives ``kill -9``, and a service
started in another data directory on the same database (another host, a new pod) has it all: jobs,
events and tokens. A URL that is not a store is exit 2 before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from service_process import RayfleetService

pytestmark = pytest.mark.slow   # the control service and a PostgreSQL server are processes

PLATFORM = Path(__file__).with_name("sim_platform.yaml")


def _job(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": "team-a",
                                                  "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1}}}}


def test_accepted_jobs_and_tokens_survive_kill_9_and_a_new_data_directory(tmp_path, postgres):
    url = postgres.new_database()
    config = tmp_path / "platform.yaml"
    config.write_text(PLATFORM.read_text().replace("defaultRuntime: 60", "defaultRuntime: 1"))
    first = RayfleetService(tmp_path / "a" / "data", config, store=url, backend="sim")
    first.data_dir.parent.mkdir()
    first.start(timeout=120)
    accepted: list[str] = []
    try:
        with first.client("team-a") as c:
            for i in range(20):
                r = c.post("/api/v1/jobs", json=_job(f"j{i}"))
                assert r.status_code == 201, r.text
                accepted.append(f"j{i}")
    finally:
        first.kill9()
    assert not (first.data_dir / "rayfleet.db").exists()   # the store is the server's, not a file here

    second = RayfleetService(tmp_path / "b" / "data", config, store=url, backend="sim")
    second.data_dir.parent.mkdir()
    second.start(timeout=120)
    try:
        assert not second.credentials.exists()   # nothing minted again: the tokens are in the store
        second.credentials = first.credentials   # the first start's tokens are the ones in the store
        with second.client("team-a") as c:
            deadline = time.monotonic() + 120
            while True:
                jobs = {j["metadata"]["name"]: j["status"]["state"] for j in c.get("/api/v1/jobs", params={"limit": 100}).json()["items"]}
                if set(jobs) == set(accepted) and set(jobs.values()) <= {"SUCCEEDED"} or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert set(jobs) == set(accepted)                # not one accepted job lost
            assert set(jobs.values()) == {"SUCCEEDED"}, jobs   # and each ran to the end
            events = [e["type"] for e in c.get("/api/v1/jobs/j0/events").json()]
            assert events[0] == "Submitted" and "Succeeded" in events, events
    finally:
        second.stop()


def test_a_store_that_is_not_one_is_exit_2_before_anything_starts(tmp_path):
    env = {**os.environ, "RAYFLEET_HOME": str(tmp_path), "RAYFLEET_STORE": "mysql://fleet@db/rayfleet"}
    r = subprocess.run([sys.executable, "-m", "rayfleet.cli", "serve", "--config", str(PLATFORM), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--store" in r.stderr and "mysql://" in r.stderr
    assert not (tmp_path / "d").exists()


def test_a_server_it_cannot_reach_is_a_clear_error_not_a_traceback(tmp_path):
    env = {**os.environ, "RAYFLEET_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "rayfleet.cli", "serve", "--config", str(PLATFORM), "--backend", "sim",
                        "--data-dir", str(tmp_path / "d"), "--store", "postgresql://fleet:s3cret@127.0.0.1:1/rayfleet"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot connect to the store postgresql://fleet:***@127.0.0.1:1/rayfleet" in r.stderr
    assert "Traceback" not in r.stderr and "s3cret" not in r.stderr


def test_an_empty_database_over_a_data_directory_with_state_is_refused(tmp_path, postgres):
    from rayfleet.errors import StartupRefused
    from rayfleet.server.storage_guard import check_store_startup

    data = tmp_path / "data"
    (data / "logs" / "j1").mkdir(parents=True)
    url = postgres.new_database()
    with pytest.raises(StartupRefused) as e:   # the wrong (or a wiped) database: every job would be forgotten
        check_store_startup(url, data)
    assert "the PostgreSQL database" in e.value.message and "holds no rayfleet data" in e.value.message
    assert "--allow-new-database" in e.value.message
    check_store_startup(url, data, allow_new_database=True)
    check_store_startup(url, tmp_path / "fresh")   # a first start: nothing to lose
    from rayfleet.server.store import Store

    Store(url).close()
    check_store_startup(url, data)   # a database with rayfleet's schema: a restart
