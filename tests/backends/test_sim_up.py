"""``rayfleet up --backend sim`` starts the control service over the simulated backend as a real
process, in seconds; a job submitted over HTTP runs and succeeds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_rayfleet_up_backend_sim_runs_a_job(tmp_path):
    cfg = tmp_path / "platform.yaml"
    cfg.write_text((ROOT / "cluster_configs" / "local.yaml").read_text().replace("  backend: local\n", "  backend: local\n  sim: {defaultRuntime: 2}\n", 1))
    env = {**os.environ, "RAYFLEET_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(sys.path)}
    port = _free_port()
    cli = [sys.executable, "-m", "rayfleet.cli"]
    started = time.monotonic()
    creds_file = tmp_path / "operator-credentials.json"  # the tokens minted at the first start, shown once
    up = subprocess.run(cli + ["up", "--backend", "sim", "--config", str(cfg), "--port", str(port), "--timeout", "60",
                               "--credentials-out", str(creds_file)],
                        env=env, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert time.monotonic() - started < 30
        import json

        creds = json.loads(creds_file.read_text())
        headers = {"Authorization": f"Bearer {creds['teams']['team-a']}"}
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok", "role": "single"}
        (cluster,) = httpx.get(f"{url}/api/v1/clusters", headers=headers, timeout=5).json()
        assert cluster["status"]["backend"] == "sim"
        job = {"kind": "TrainJob", "metadata": {"name": "smoke"}, "spec": {
            "entrypoint": "python train.py", "queue": "team-a",
            "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1, "memory": "4Gi", "nvidia.com/gpu": 8}}}}
        r = httpx.post(f"{url}/api/v1/jobs", json=job, headers=headers, timeout=10)
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline:
            state = httpx.get(f"{url}/api/v1/jobs/smoke", headers=headers, timeout=5).json()["status"]["state"]
            if state in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(0.5)
        assert state == "SUCCEEDED"
        logs = httpx.get(f"{url}/api/v1/jobs/smoke/logs", headers=headers, timeout=5).text
        assert "attempt 1 SUCCEEDED" in logs
    finally:
        down = subprocess.run(cli + ["down", "--backend", "sim", "--config", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
