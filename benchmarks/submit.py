"""Benchmark: ``ray job submit`` of a trivial job through rayfleet vs straight to the local Ray
dashboard, in the same run on the same cluster; and the control service's idle RSS (its own
process, without the Ray cluster's processes).

Targets: submit wall-time ratio (rayfleet / Ray) <= 1.10; idle RSS <= 200 MB.
Last line: one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "e2e" / "fleet.yaml"
RAY = str(Path(sys.executable).with_name("ray"))
ROUNDS = int(os.environ.get("RAYFLEET_BENCH_ROUNDS", "5"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_submit(address: str, env: dict[str, str], extra: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([RAY, "job", "submit", "--address", address, *extra, "--", "python", "-c", "print('ok')"],
                       capture_output=True, text=True, env=env, timeout=600)
    dt = time.perf_counter() - t0
    if r.returncode != 0 or "ok" not in r.stdout:
        raise RuntimeError(f"ray job submit via {address} failed: {r.stdout[-1500:]} {r.stderr[-1500:]}")
    return dt


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="rf-bench-submit-"))
    data = work / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(work / "service.log", "wb")
    svc = subprocess.Popen([sys.executable, "-m", "rayfleet.cli", "serve", "--config", str(CONFIG), "--data-dir", str(data),
                            "--port", str(port), "--credentials-out", str(work / "credentials.json")], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if svc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service did not start: {(work / 'service.log').read_text()[-2000:]}")
            time.sleep(0.5)
        time.sleep(3)  # let the controller settle: idle
        idle_rss = rss_mb(svc.pid)
        info = json.loads((data / "service.json").read_text())["ray"]
        creds = json.loads((work / "credentials.json").read_text())
        fleet_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": creds["teams"]["team-a"]}
        # straight to the local cluster's dashboard: that needs the cluster's own token
        from rayfleet.backends import local_client_env
        from rayfleet.config import load_config

        ray_env = {**env, **local_client_env(load_config([CONFIG]), data)}
        meta = ["--metadata-json", json.dumps({"queue": "team-a"})]
        # one warm-up each (first job imports, worker pool), then alternate to share any drift
        timed_submit(url, fleet_env, meta)
        timed_submit(info["dashboard_url"], ray_env, [])
        fleet_t, ray_t = [], []
        for _ in range(ROUNDS):
            fleet_t.append(timed_submit(url, fleet_env, meta))
            ray_t.append(timed_submit(info["dashboard_url"], ray_env, []))
        fleet_med, ray_med = statistics.median(fleet_t), statistics.median(ray_t)
        print(f"ray job submit (trivial job, wait for completion), median of {ROUNDS}:")
        print(f"  through rayfleet (quota admission, then Ray): {fleet_med:.2f}s  {[round(t, 2) for t in fleet_t]}")
        print(f"  straight to the Ray dashboard (baseline):      {ray_med:.2f}s  {[round(t, 2) for t in ray_t]}")
        print(f"  ratio: {fleet_med / ray_med:.3f} (target <= 1.10)")
        print(f"control service idle RSS (without Ray's processes): {idle_rss:.0f} MB (target <= 200 MB)")
        print(json.dumps({"benchmark": "submit", "rounds": ROUNDS, "rayfleet_submit_s": round(fleet_med, 3),
                          "ray_submit_s": round(ray_med, 3), "ratio": round(fleet_med / ray_med, 3), "ratio_target": 1.10,
                          "idle_rss_mb": round(idle_rss, 1), "idle_rss_target_mb": 200}))
    finally:
        os.killpg(svc.pid, signal.SIGTERM)
        try:
            svc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(svc.pid, signal.SIGKILL)
        sys.path.insert(0, str(ROOT / "platform"))
        from rayfleet.backends import make_backend
        from rayfleet.config import load_config

        make_backend(load_config([CONFIG]), data).down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
