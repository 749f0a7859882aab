"""The driver of an entry-point run (``ray job submit -- CMD`` through rayfleet):
``python -m rayfleet.train.entrypoint --run-dir DIR``.

Submitted by the backend as a Ray job (submission id = run id). It reserves the gang as one
placement group (one bundle per worker, pinned to the admitted pool by bundle label selectors),
waits for it up to the placement timeout, then runs CMD with the group in its environment:
``RAYFLEET_PLACEMENT_GROUP`` (name, in namespace ``RAYFLEET_RAY_NAMESPACE``),
``RAYFLEET_PLACEMENT_GROUP_ID`` (hex id; :func:`rayfleet.train.gang.current_placement_group`),
``RAYFLEET_BUNDLE_RESOURCES``, ``RAYFLEET_WORKERS``, ``RAYFLEET_RUN_ID``, ``RAYFLEET_CHECKPOINT_DIR``.
CMD's exit code is the job's. The placement group is removed when CMD ends or the job is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from ..backends.placement import GangPlan
from ..backends.rundir import RunDir
from . import gang

NAMESPACE = "rayfleet"


def run(run_dir: RunDir) -> int:
    req = run_dir.request()
    if req is None:
        print(f"rayfleet entrypoint: no request in {run_dir.path}", file=sys.stderr)
        return 2
    plan = GangPlan.from_dict(req["plan"])
    timeout = float(req.get("placement_timeout_s") or 120)
    run_dir.update_status(phase="placing", message=f"waiting for the gang's placement group: {plan.describe()}", driver_pid=os.getpid(), launched_at=time.time())

    import ray
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    ray.init(address="auto", namespace=NAMESPACE, log_to_driver=True)
    name = f"rayfleet-{req['run_id']}"
    pg = placement_group(plan.bundles(), strategy=plan.strategy, name=name, bundle_label_selector=[dict(s) for s in plan.label_selectors])
    child: subprocess.Popen | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
        remove_placement_group(pg)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if not pg.wait(timeout_seconds=timeout):
        remove_placement_group(pg)
        message = f"gang {plan.describe()} could not be placed within {timeout:.0f}s: not enough free hosts of pool {plan.pool!r} with these resources"
        run_dir.update_status(phase="failed", kind="placement-timeout", error=message, finished_at=time.time())
        print(f"rayfleet: {message}", file=sys.stderr, flush=True)
        return 1
    table = placement_group_table(pg)
    node_ids = [table["bundles_to_node_id"][i] for i in range(plan.workers)]
    env = dict(os.environ)
    env.update({
        gang.ENV_PLACEMENT_GROUP: name,
        gang.ENV_PLACEMENT_GROUP_ID: pg.id.hex(),
        gang.ENV_NAMESPACE: NAMESPACE,
        gang.ENV_BUNDLE: json.dumps(plan.bundle),
        gang.ENV_WORKERS: str(plan.workers),
        gang.ENV_RUN_ID: req["run_id"],
        gang.ENV_CHECKPOINT_DIR: req["checkpoint_dir"],
    })
    print(f"rayfleet: run {req['run_id']}: gang placed ({plan.describe()}); running: {req['entrypoint']}", flush=True)
    child = subprocess.Popen(["/bin/sh", "-c", req["entrypoint"]], env=env)
    run_dir.update_status(phase="running", message="", started_at=time.time(), node_ids=node_ids, child_pid=child.pid)
    rc = child.wait()
    remove_placement_group(pg)
    if rc == 0:
        run_dir.update_status(phase="succeeded", exit_code=rc, finished_at=time.time())
    else:
        run_dir.update_status(phase="failed", kind="error", exit_code=rc, error=f"the entrypoint exited with code {rc}", finished_at=time.time())
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rayfleet.train.entrypoint", description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True, help="the run directory the backend prepared")
    args = ap.parse_args(argv)
    return run(RunDir(args.run_dir))


if __name__ == "__main__":
    sys.exit(main())
