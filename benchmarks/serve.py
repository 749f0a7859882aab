"""Serve through rayfleet vs plain ``serve.run``: requests/s and p50/p99 latency, same cluster, same run.

Starts a throwaway local Ray cluster through rayfleet's local backend (a head and 2 simulated L4
hosts labelled as a rayfleet pool), then serves the same application twice behind the same Serve proxy:

* ``rayfleet``: a rayfleet Service (``serve_apps.classifier:app``) deployed by
  :class:`rayfleet.serve.deployer.ServeDeployer`: placement group per replica pinned to the pool,
  rayfleet's autoscaling policy, health checks, quota cap;
* ``plain``: ``serve.run(serve_apps.classifier.app)`` from a driver, one replica, Serve defaults.

Both get one replica. A closed loop of ``--clients`` concurrent HTTP clients drives each in
alternating rounds (so both see the same noise on a shared machine); latencies are per request,
client side. Targets: throughput ratio (rayfleet/plain) >= 0.9, p50 ratio <= 1.1.
The last line printed is one JSON object.

    python benchmarks/serve.py [--clients 8] [--rounds 4] [--round-s 5] [--warmup-s 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from rayfleet.api import PoolSpec, Service  # noqa: E402
from rayfleet.backends.local import LocalBackend  # noqa: E402
from rayfleet.serve.deployer import ServeDeployer, ServeOptions  # noqa: E402

POOL = "l4"
L4 = PoolSpec(accelerator="nvidia-l4", accelerators_per_host=1, machine_type="g2-standard-8", min_replicas=2, max_replicas=2)
BODY = {"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def drive(url: str, clients: int, seconds: float) -> tuple[list[float], int]:
    """Closed loop: ``clients`` workers post for ``seconds``; returns latencies (s) and errors."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await http.post(url, json=BODY)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors


def summarize(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else float("nan"),
    }


def wait_ok(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json=BODY, timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--round-s", type=float, default=5.0)
    ap.add_argument("--warmup-s", type=float, default=3.0)
    args = ap.parse_args()

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t_start = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="rf-bench-serve-"))
    cluster = LocalBackend({POOL: L4}, data_dir, temp_dir=f"/tmp/rf-bs-{uuid.uuid4().hex[:8]}")
    cluster.up()
    print(f"cluster up in {time.monotonic() - t_start:.1f}s ({cluster.address})", flush=True)
    try:
        import ray
        from ray import serve

        from serve_apps.classifier import app as plain_app

        deployer = ServeDeployer(cluster.dashboard_url, cluster.address, options=ServeOptions(http_port=cluster.serve_port))
        svc = Service.model_validate(
            {
                "metadata": {"name": "bench"},
                "spec": {
                    "importPath": "serve_apps.classifier:app",
                    "queue": "team-c",
                    "routePrefix": "/bench",
                    "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"nvidia.com/gpu": 1}},
                    "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
                },
            }
        )
        deployer.deploy(svc, POOL, L4, granted_replicas=1)
        deployer.wait("bench", lambda st: st.running == 1, timeout_s=300)
        rayfleet_url = deployer.status("bench").url + "/"

        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        serve.run(plain_app, name="plain", route_prefix="/plain", blocking=False)
        plain_url = f"http://127.0.0.1:{cluster.serve_port}/plain/"
        wait_ok(rayfleet_url)
        wait_ok(plain_url)
        print(f"both apps answering after {time.monotonic() - t_start:.1f}s", flush=True)

        targets = {"rayfleet": rayfleet_url, "plain": plain_url}
        for url in targets.values():  # warm both paths (connections, routers, torch)
            asyncio.run(drive(url, args.clients, args.warmup_s))
        lat: dict[str, list[float]] = {k: [] for k in targets}
        err: dict[str, int] = dict.fromkeys(targets, 0)
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                ls, es = asyncio.run(drive(targets[name], args.clients, args.round_s))
                lat[name].extend(ls)
                err[name] += es
                print(f"round {r + 1} {name}: {len(ls) / args.round_s:.1f} req/s, p50 {percentile(ls, 50) * 1000:.2f} ms", flush=True)
        seconds = args.rounds * args.round_s
        res = {k: summarize(lat[k], err[k], seconds) for k in targets}
        thr_ratio = res["rayfleet"]["rps"] / res["plain"]["rps"] if res["plain"]["rps"] else float("nan")
        p50_ratio = res["rayfleet"]["p50_ms"] / res["plain"]["p50_ms"] if res["plain"]["p50_ms"] else float("nan")
        out = {
            "benchmark": "serve",
            "app": "serve_apps.classifier:app",
            "clients": args.clients,
            "seconds_each": seconds,
            "rayfleet": res["rayfleet"],
            "plain_serve_run": res["plain"],
            "throughput_ratio": round(thr_ratio, 3),
            "p50_ratio": round(p50_ratio, 3),
            "p99_ratio": round(res["rayfleet"]["p99_ms"] / res["plain"]["p99_ms"], 3) if res["plain"]["p99_ms"] else None,
            "targets": {"throughput_ratio_min": 0.9, "p50_ratio_max": 1.1},
            "meets_targets": bool(thr_ratio >= 0.9 and p50_ratio <= 1.1),
        }
        serve.delete("plain")
        deployer.delete("bench")
        ray.shutdown()
    finally:
        cluster.down()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
