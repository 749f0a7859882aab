"""The driver of a train-app run: ``python -m rayfleet.train.launcher --run-dir DIR``.

Submitted by the backend as a Ray job (submission id = run id). It reads the launch from the run
directory, builds a ``TorchTrainer`` whose worker group is the gang (one placement group, one
bundle per worker, pinned to the admitted pool by bundle label selectors; see
:mod:`rayfleet.train.gang`), restores the job's latest checkpoint from its stable checkpoint
directory, and runs it. Progress and the outcome go to the run directory's status.json; worker
output reaches the job's logs through Ray's log streaming.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any

from ..backends.placement import GangPlan
from ..backends.rundir import RunDir, latest_checkpoint_step
from . import gang
from .worker import CONFIG_KEY, load_app, run_worker

PLACEMENT_TIMEOUT_TEXT = "worker group startup timed out"
LOST_TEXTS = ("ActorDiedError", "ActorUnavailableError", "NodeDiedError", "node died", "RayActorError", "died unexpectedly")


def classify_failure(err: BaseException, plan: GangPlan, timeout_s: float) -> tuple[str, str]:
    """(kind, message) of a failed fit: placement-timeout, worker-lost or error."""
    text = "".join(traceback.format_exception(err))
    if PLACEMENT_TIMEOUT_TEXT in text:
        return "placement-timeout", (
            f"gang {plan.describe()} could not be placed within {timeout_s:.0f}s: "
            f"not enough free hosts of pool {plan.pool!r} with these resources"
        )
    if any(t in text for t in LOST_TEXTS):
        return "worker-lost", "a worker of the gang died: " + _last_line(err)
    return "error", _last_line(err)


def _last_line(err: BaseException) -> str:
    """The innermost error, short: what ``the job fails with the last error`` shows."""
    inner: BaseException = err
    seen = set()
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    text = f"{type(inner).__name__}: {inner}".strip()
    return text[-4000:]


def build_trainer(req: dict[str, Any], plan: GangPlan, run_dir: RunDir) -> Any:
    from ray.train.torch import TorchTrainer

    load_app(req["train_app"])  # fail here, in the driver, if the app cannot be imported
    config = dict(req.get("train_config") or {})
    config[CONFIG_KEY] = {"run_dir": str(run_dir.path), "app": req["train_app"]}
    num_to_keep = int((req.get("metadata") or {}).get("checkpoint_num_to_keep", 2))
    return TorchTrainer(
        run_worker,
        train_loop_config=config,
        torch_config=gang.torch_config(plan, fake_accelerators=bool(req.get("fake_accelerators"))),
        scaling_config=gang.scaling_config(plan),
        run_config=gang.run_config(req["checkpoint_dir"], num_to_keep=num_to_keep),
    )


def run(run_dir: RunDir) -> int:
    req = run_dir.request()
    if req is None:
        print(f"rayfleet launcher: no request in {run_dir.path}", file=sys.stderr)
        return 2
    plan = GangPlan.from_dict(req["plan"])
    timeout = float(req.get("placement_timeout_s") or 120)
    os.environ[gang.ENV_START_TIMEOUT] = str(timeout)
    # Train V2 also copies worker prints into its own logger, so every line reached the job's
    # logs twice; worker stdout is streamed to the driver anyway.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    resumed = latest_checkpoint_step(req["checkpoint_dir"])
    run_dir.update_status(
        phase="placing",
        message=f"waiting for the gang's placement group: {plan.describe()}",
        resumed_from_step=resumed,
        driver_pid=os.getpid(),
        launched_at=time.time(),
    )
    import ray

    ray.init(address="auto", log_to_driver=True)
    print(f"rayfleet: run {req['run_id']} (job {req['job_id']}, attempt {req['attempt']}): {plan.describe()}", flush=True)
    print(f"rayfleet: checkpoints in {req['checkpoint_dir']}; resuming from step {resumed}" if resumed is not None else "rayfleet: no checkpoint yet, starting from scratch", flush=True)
    try:
        trainer = build_trainer(req, plan, run_dir)
        result = trainer.fit()
    except Exception as e:
        kind, message = classify_failure(e, plan, timeout)
        run_dir.update_status(phase="failed", kind=kind, error=message, finished_at=time.time())
        print(f"rayfleet: run failed ({kind}): {message}", file=sys.stderr, flush=True)
        return 1
    metrics = dict(result.metrics or {})
    run_dir.update_status(phase="succeeded", metrics=metrics, finished_at=time.time())
    print(f"rayfleet: run succeeded: {metrics}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rayfleet.train.launcher", description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True, help="the run directory the backend prepared")
    args = ap.parse_args(argv)
    return run(RunDir(args.run_dir))


if __name__ == "__main__":
    sys.exit(main())
