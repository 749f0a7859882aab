"""Storage faults under a running app, with real files: the SQLite file deleted, replaced,
read-only (as root: an immutable file, ``chattr +i``, or a read-only bind mount of the data
directory: file modes do not stop root), full (a real full tmpfs, and SQLite's
``max_page_count`` as a simulated full database); and the start-up guard against a fresh
database over an old one's state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rayfleet.backends import make_backend
from rayfleet.config import load_config
from rayfleet.errors import StartupRefused
from rayfleet.server.app import create_app
from rayfleet.server.main import assemble
from rayfleet.server.storage_guard import check_startup
from rayfleet.server.tokens import ensure_tokens

LOCAL = Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"


def job(name):
    return {"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": "team-a"}}


def assert_refused(api, headers, reason, name="after"):
    r = api.post("/api/v1/jobs", json=job(name), headers=headers)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "StorageUnavailable" and r.json()["reason"] == reason, r.json()
    ray = api.post("/api/jobs/", json={"entrypoint": "true", "submission_id": f"{name}-ray", "metadata": {"queue": "team-a"}},
                   headers=headers)
    assert ray.status_code == 503 and f"storage unavailable ({reason})" in ray.text, ray.text
    h = api.get("/healthz")
    assert (h.status_code, h.json()) == (503, {"status": "unhealthy", "reason": "storage", "role": "single"})


def run_as_root(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"{' '.join(cmd)} is not possible here: {r.stderr.strip()}")


def test_healthy_service_says_ok(api):
    h = api.get("/healthz")
    assert (h.status_code, h.json()) == (200, {"status": "ok", "role": "single"})


def test_deleted_database_refuses_writes_and_is_unhealthy(api, fleet, team_a, tmp_path):
    assert api.post("/api/v1/jobs", json=job("before"), headers=team_a).status_code == 201
    (tmp_path / "rayfleet.db").unlink()
    assert_refused(api, team_a, "missing")
    assert "was deleted" in api.post("/api/v1/jobs", json=job("x"), headers=team_a).json()["message"]
    # reads still answer from the open file
    assert api.get("/api/v1/jobs/before", headers=team_a).status_code == 200


def test_replaced_database_refuses_writes(api, fleet, team_a, tmp_path):
    db = tmp_path / "rayfleet.db"
    shutil.copy(db, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", db)  # same content, another file
    assert_refused(api, team_a, "replaced")


def unmount(path: Path) -> None:
    """Unmount ``path``; when it is busy (a file of the store still open through the mount), unmount
    it lazily so no mount outlives the test, and fail: something kept the mount busy."""
    busy = subprocess.run(["umount", str(path)], capture_output=True, text=True)
    if busy.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True)
        raise AssertionError(f"umount {path} failed ({busy.stderr.strip()}): a file was still open through the mount; unmounted lazily")


@pytest.mark.slow  # runs chattr / mount
def test_immutable_database_file_is_read_only_even_for_root(api, fleet, team_a, tmp_path):
    db = tmp_path / "rayfleet.db"
    run_as_root("chattr", "+i", str(db))
    try:
        assert_refused(api, team_a, "read-only")
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert api.post("/api/v1/jobs", json=job("later"), headers=team_a).status_code == 201
    assert api.get("/healthz").json() == {"status": "ok", "role": "single"}


@pytest.mark.slow  # runs chattr / mount
def test_read_only_data_directory(api, fleet, team_a, tmp_path):
    run_as_root("mount", "--bind", str(tmp_path), str(tmp_path))
    try:
        run_as_root("mount", "-o", "remount,bind,ro", str(tmp_path))
        assert_refused(api, team_a, "read-only")
    finally:
        unmount(tmp_path)
    assert api.post("/api/v1/jobs", json=job("later"), headers=team_a).status_code == 201


@contextmanager
def service_on(data: Path):
    cfg = load_config([LOCAL])
    fleet = assemble(cfg, make_backend(cfg, data), data)
    creds = ensure_tokens(fleet.store, cfg)
    try:
        with TestClient(create_app(fleet, start_controller=False)) as client:
            yield fleet, client, {"Authorization": f"Bearer {creds['teams']['team-a']}"}
    finally:
        fleet.close()


@pytest.mark.slow  # runs chattr / mount
def test_full_disk_answers_503_full_until_space_is_freed(tmp_path):
    data = tmp_path / "small"
    data.mkdir()
    run_as_root("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data))
    try:
        with service_on(data) as (fleet, api, team_a):
            assert api.post("/api/v1/jobs", json=job("fits"), headers=team_a).status_code == 201
            with open(data / "filler", "wb", buffering=0) as f:   # (unbuffered: nothing left to flush at close)
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            statuses = [api.post("/api/v1/jobs", json=job(f"big{i}") | {"spec": {**job("x")["spec"], "entrypoint": "x" * 20000}},
                                 headers=team_a) for i in range(20)]
            refused = [r for r in statuses if r.status_code != 201]
            assert refused and refused[0].status_code == 503 and refused[0].json()["reason"] == "full", refused[0].text
            assert api.get("/healthz").json() == {"status": "unhealthy", "reason": "storage", "role": "single"}
            (data / "filler").unlink()
            assert api.post("/api/v1/jobs", json=job("again"), headers=team_a).status_code == 201
            assert api.get("/healthz").json() == {"status": "ok", "role": "single"}
    finally:
        unmount(data)


def test_full_database_simulated_by_max_page_count(api, fleet, team_a):
    """SQLite's page cap stands in for a full disk where no tmpfs can be mounted."""
    with fleet.store._lock:   # on the writer's connection (reads have their own)
        pages = fleet.store._db.execute("PRAGMA page_count").fetchone()[0]
        fleet.store._db.execute(f"PRAGMA max_page_count={pages}")
    answers = [api.post("/api/v1/jobs", json=job(f"j{i}") | {"spec": {**job("x")["spec"], "entrypoint": "y" * 5000}},
                        headers=team_a) for i in range(40)]
    refused = [r for r in answers if r.status_code != 201]
    assert refused and refused[0].status_code == 503 and refused[0].json()["reason"] == "full", refused[0].text
    assert "database or disk is full" in refused[0].json()["message"]


# ------------------------------------------------------------------ start-up


def test_startup_refuses_a_new_database_over_existing_state(tmp_path, monkeypatch):
    monkeypatch.delenv("RAYFLEET_ALLOW_NEW_DATABASE", raising=False)
    check_startup(tmp_path)  # an empty directory: a first start
    (tmp_path / "credentials.json").write_text("{}")
    (tmp_path / "logs" / "j1").mkdir(parents=True)
    with pytest.raises(StartupRefused) as e:
        check_startup(tmp_path)
    assert "rayfleet.db is missing" in e.value.message and "credentials.json, logs" in e.value.message
    assert "--allow-new-database" in e.value.message
    check_startup(tmp_path, allow_new_database=True)
    monkeypatch.setenv("RAYFLEET_ALLOW_NEW_DATABASE", "1")
    check_startup(tmp_path)
    monkeypatch.delenv("RAYFLEET_ALLOW_NEW_DATABASE")
    (tmp_path / "rayfleet.db").write_bytes(b"")  # a database is there: a restart
    check_startup(tmp_path)


def test_empty_state_directories_are_not_state(tmp_path):
    for sub in ("logs", "packages", "checkpoints", "runs"):
        (tmp_path / sub).mkdir()
    check_startup(tmp_path)


@pytest.mark.slow  # runs the CLI as a process
@pytest.mark.parametrize("command", [["serve", "--data-dir", "{data}"], ["up"]])
def test_cli_exits_2_before_starting_anything(tmp_path, command):
    data = tmp_path / "data"
    (data / "runs" / "j1-1").mkdir(parents=True)
    (data / "credentials.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "RAYFLEET_ALLOW_NEW_DATABASE"} | {"RAYFLEET_HOME": str(tmp_path)}
    args = [a.format(data=data) for a in command]
    r = subprocess.run([sys.executable, "-m", "rayfleet.cli", *args, "--config", str(LOCAL)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "rayfleet.db is missing" in r.stderr and "--allow-new-database" in r.stderr
    assert not (data / "rayfleet.db").exists() and not (data / "service.json").exists()
