"""Helpers of the Train gang tests (a unique module name: tests/ has no __init__ files)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rayfleet.api import Accelerator
from rayfleet.backends.base import LaunchRequest, RunStatus


def wait_for(backend, run_id: str, pred: Callable[[RunStatus], bool], timeout: float = 300.0, what: str = "") -> RunStatus:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = backend.run_status(run_id)
        if last is not None and pred(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"{run_id}: timed out waiting for {what or pred}; last status: {last}")


def tpu_request(backend, job_id: str, *, steps: int = 200, ckpt_dir: str | None = None) -> LaunchRequest:
    """Attempt 1 of a tiny_lm gang over pool ``tpu``'s v5e 2x4 slice: 2 workers x 4 chips."""
    return LaunchRequest(
        job_id=job_id,
        attempt=1,
        pool="tpu",
        pool_spec=backend.pools["tpu"],
        workers=2,
        resources_per_worker={"cpu": 8000, "google.com/tpu": 4},
        accelerator=Accelerator.TPU_V5E,
        placement_strategy=None,
        train_app="train_apps.tiny_lm",
        train_config={"steps": steps, "checkpoint_every": 5, "step_sleep_s": 0.3},
        checkpoint_dir=ckpt_dir,
    )


def live_train_workers(backend, run_id: str) -> list:
    """RayTrainWorker actors of the run's Ray job that are not dead."""
    info = backend.jobs.info(run_id)
    if info is None or not info.job_id:
        return []
    return [a for a in backend._list("actors", [("job_id", "=", info.job_id)]) if a.class_name == "RayTrainWorker" and a.state != "DEAD"]
