"""Train launch benchmark: time from admission to all workers running, through rayfleet vs a plain
Ray Train launch of the same app on the same local cluster, in the same run.

One local cluster (``LocalBackend``, a ``gpu`` pool of 2 simulated hosts with 2 fake GPUs each).
Each trial launches ``train_apps.ddp_synthetic`` on 2 workers x 2 GPUs, both ways, in alternating
order:

- ``rayfleet``: ``LocalBackend.launch`` of an admitted LaunchRequest: feasibility check, gang plan,
  run directory, a Ray job running ``rayfleet.train.launcher`` (TorchTrainer whose placement group
  is pinned to the pool by bundle label selectors, checkpoint restore from the job's directory);
- ``plain``: a Ray job submitted with the same Jobs API client whose driver (this file with
  ``--plain-driver``) builds a plain ``TorchTrainer`` (``ScalingConfig(num_workers=2,
  use_gpu=True, resources_per_worker={"GPU": 2})``, gloo) over the same train loop.

The clock starts just before the launch call (admission) and stops when the last worker entered
the train loop: both ways record each rank's start time in a file the same way, so the figure does
not depend on polling. Each run is then stopped and its hosts freed before the next one starts.

The last line printed is one JSON object: median seconds both ways, every trial, and the ratio
rayfleet / plain (target <= 1.2).
"""

from __future__ import annotations

import argparse
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
APP = "train_apps.ddp_synthetic"
APP_CONFIG = {"steps": 100_000, "checkpoint_every": 1000, "step_sleep_s": 0.05}

CONFIG = """\
kind: Cluster
metadata: {name: bench-train}
spec:
  backend: local
  local: {objectStoreMemory: 96Mi, headCpus: 2}
  startTimeout: 300
---
kind: Pool
metadata: {name: gpu}
spec: {accelerator: nvidia-l4, acceleratorsPerHost: 2, machineType: g2-standard-24, cpuPerHost: 24, memoryPerHost: 96Gi, minReplicas: 2, maxReplicas: 2}
"""


# ---------------------------------------------------------------- the plain driver (a Ray job)


def _plain_worker(config: dict) -> None:
    import importlib

    import ray.train

    config = dict(config)
    marker_dir = config.pop("_marker_dir")
    rank = ray.train.get_context().get_world_rank()
    path = Path(marker_dir) / f"rank-{rank}.json"
    path.write_text(json.dumps({"rank": rank, "t": time.time()}))
    importlib.import_module(APP).train_loop_per_worker(config)


def plain_driver(marker_dir: str, storage: str, workers: int) -> int:
    """A user's own launch: ``ray job submit -- python this.py --plain-driver ...``."""
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    ray.init(address="auto")
    trainer = TorchTrainer(
        _plain_worker,
        train_loop_config={**APP_CONFIG, "_marker_dir": marker_dir},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=True, resources_per_worker={"GPU": 2}),
        run_config=ray.train.RunConfig(
            name="plain",
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=0, controller_failure_limit=0),
        ),
    )
    trainer.fit()
    return 0


# ---------------------------------------------------------------- the benchmark


def _all_started(marker_dir: Path, workers: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(marker_dir.glob("rank-*.json"))
        if len(files) >= workers:
            return max(json.loads(f.read_text())["t"] for f in files)
        time.sleep(0.05)
    raise TimeoutError(f"workers did not all start within {timeout:.0f}s ({marker_dir})")


def run_rayfleet(backend, trial: int, workers: int, work: Path, timeout: float) -> float:
    from rayfleet.api import Accelerator
    from rayfleet.backends.base import LaunchRequest

    req = LaunchRequest(
        job_id=f"bench-{trial}",
        attempt=1,
        pool="gpu",
        pool_spec=backend.pools["gpu"],
        workers=workers,
        resources_per_worker={"cpu": 1000, "nvidia.com/gpu": 2},
        accelerator=Accelerator.L4,
        placement_strategy=None,
        train_app=APP,
        train_config=dict(APP_CONFIG),
        checkpoint_dir=str(work / f"ckpt-rayfleet-{trial}"),
    )
    t0 = time.time()
    run_id = backend.launch(req)
    started = _all_started(backend.run_dir(run_id).workers_dir, workers, timeout)
    status = backend.run_status(run_id)
    assert status is not None and status.started_at == started, status
    backend.stop(run_id, reason="benchmark")
    return started - t0


def run_plain(backend, trial: int, workers: int, work: Path, timeout: float) -> float:
    markers = work / f"plain-{trial}"
    markers.mkdir(parents=True)
    entrypoint = " ".join([
        sys.executable, str(Path(__file__).resolve()), "--plain-driver",
        "--marker-dir", str(markers), "--storage", str(work / f"ckpt-plain-{trial}"), "--workers", str(workers),
    ])
    submission_id = f"plain-{trial}-{uuid.uuid4().hex[:6]}"
    t0 = time.time()
    backend.jobs.submit(submission_id, entrypoint)
    started = _all_started(markers, workers, timeout)
    backend.jobs.stop(submission_id)
    info = backend.jobs.wait_terminal(submission_id, timeout_s=60)
    if info is not None and info.job_id:
        backend._wait_gang_released(info.job_id, timeout_s=60)
    return started - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3, help="trials each way (default 3; medians are reported)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds one launch may take")
    ap.add_argument("--plain-driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--marker-dir", help=argparse.SUPPRESS)
    ap.add_argument("--storage", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain_driver:
        return plain_driver(args.marker_dir, args.storage, args.workers)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.path.insert(0, str(ROOT / "platform"))
    sys.path.insert(0, str(ROOT))
    from rayfleet.backends.local import LocalBackend

    work = Path(tempfile.mkdtemp(prefix="rf-bench-train-"))
    (work / "cluster.yaml").write_text(CONFIG)
    backend = LocalBackend.from_config_files([work / "cluster.yaml"], work / "data", temp_dir=f"/tmp/rf-bench-{uuid.uuid4().hex[:8]}", placement_timeout_s=args.timeout)
    t = time.monotonic()
    backend.up()
    up_s = time.monotonic() - t
    print(f"train_launch: local cluster up in {up_s:.1f}s ({len(backend.hosts)} hosts)", flush=True)
    rayfleet: list[float] = []
    plain: list[float] = []
    try:
        # Warm-up, not measured: the first Train run on a fresh cluster pays cold imports for both.
        run_plain(backend, 0, args.workers, work, args.timeout)
        for trial in range(1, args.trials + 1):
            order = [("rayfleet", run_rayfleet), ("plain", run_plain)]
            if trial % 2 == 0:
                order.reverse()
            for name, fn in order:
                seconds = fn(backend, trial, args.workers, work, args.timeout)
                (rayfleet if name == "rayfleet" else plain).append(seconds)
                print(f"train_launch: trial {trial} {name}: {seconds:.2f}s to all {args.workers} workers running", flush=True)
    finally:
        backend.down()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(backend.temp_dir, ignore_errors=True)
    r, p = statistics.median(rayfleet), statistics.median(plain)
    out = {
        "benchmark": "train_launch",
        "app": APP,
        "workers": args.workers,
        "trials": args.trials,
        "rayfleet_s": round(r, 3),
        "plain_s": round(p, 3),
        "ratio": round(r / p, 3),
        "target_ratio_max": 1.2,
        "met": r / p <= 1.2,
        "rayfleet_trials_s": [round(x, 3) for x in rayfleet],
        "plain_trials_s": [round(x, 3) for x in plain],
        "cluster_up_s": round(up_s, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
