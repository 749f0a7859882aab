"""The run directory: what a local run's driver (the Train launcher or the entry-point wrapper)
and the backend tell each other, as small JSON files written atomically.

``<data_dir>/runs/<run_id>/``
  request.json   the launch: LaunchRequest fields, the GangPlan, launcher settings (backend writes)
  status.json    the driver's progress: phase, started_at, node ids, resume step, error (driver writes)
  workers/       one ``rank-<i>.json`` per Train worker once it runs: node id, pid, time
  stop.json      a stop the backend asked for, with its reason (backend writes)
  lost.json      the backend found a host of the gang dead (backend writes)
  final.json     the terminal RunStatus, kept unchanged from then on (backend writes)
  checkpoint-request.json  "checkpoint now" requests, numbered (backend writes; the run's
                 processes read it through :mod:`rayfleet.train.notice`, path in $RAYFLEET_CHECKPOINT_REQUEST)
  submitted      marker: the Ray job exists (backend writes after the submission succeeded)

All files live on the machine's disk; local hosts share it, so workers write their own files.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RUN_DIR_ENV = "RAYFLEET_RUN_DIR"
#: Environment variable naming a run's checkpoint-request file (set in every process of the run).
CHECKPOINT_REQUEST_ENV = "RAYFLEET_CHECKPOINT_REQUEST"
CHECKPOINT_REQUEST_FILE = "checkpoint-request.json"


def checkpoint_request(seq: int, at: float, reason: str = "") -> dict[str, Any]:
    """The body of a checkpoint-request file, on every backend (the local run directory, the
    KubeRay notice ConfigMap): request number ``seq`` (a reader acts on a number it has not acted
    on yet), made at ``at``."""
    return {"seq": seq, "at": at, "reason": reason}


def checkpoint_request_seq(data: Any) -> int:
    """The request number of a decoded checkpoint-request body (0: no request)."""
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
#: RunConfig.name of every rayfleet Train run: checkpoints live in <checkpoint_dir>/train, so
#: attempt N+1 of a job (same checkpoint_dir) restores what attempt N registered.
TRAIN_RUN_NAME = "train"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def request_doc(req: Any, *, plan: Any, checkpoint_dir: str | None, placement_timeout_s: float,
                fake_accelerators: bool) -> dict[str, Any]:
    """A run's ``request.json``: the launch request and its gang plan, which the drivers
    (``rayfleet.train.launcher`` / ``rayfleet.train.entrypoint``) read on either backend."""
    return {
        "run_id": req.run_id,
        "job_id": req.job_id,
        "attempt": req.attempt,
        "pool": req.pool,
        "workers": req.workers,
        "resources_per_worker": dict(req.resources_per_worker),
        "accelerator": req.accelerator.value if req.accelerator else None,
        "entrypoint": req.entrypoint,
        "train_app": req.train_app,
        "train_config": req.train_config,
        "checkpoint_dir": checkpoint_dir,
        "max_run_duration": req.max_run_duration,
        "metadata": dict(req.metadata),
        "plan": plan.to_dict() if plan else None,
        "placement_timeout_s": placement_timeout_s,
        # Local hosts carry fake GPUs: Train reserves them but the collective backend is gloo.
        "fake_accelerators": fake_accelerators,
    }


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def request_path(self) -> Path:
        return self.path / "request.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def workers_dir(self) -> Path:
        return self.path / "workers"

    def exists(self) -> bool:
        return self.request_path.exists()

    # -- request (backend -> driver)

    def write_request(self, data: dict[str, Any]) -> None:
        write_json(self.request_path, data)

    def request(self) -> dict[str, Any] | None:
        return read_json(self.request_path)

    # -- status (driver -> backend)

    def status(self) -> dict[str, Any]:
        return read_json(self.status_path) or {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json (only the run's driver writes it)."""
        data = self.status()
        data.update(fields)
        data["updated_at"] = time.time()
        write_json(self.status_path, data)
        return data

    # -- workers (Train workers -> backend)

    def write_worker(self, rank: int, info: dict[str, Any]) -> None:
        write_json(self.workers_dir / f"rank-{rank}.json", info)

    def workers(self) -> list[dict[str, Any]]:
        if not self.workers_dir.is_dir():
            return []
        out = [read_json(p) for p in sorted(self.workers_dir.glob("rank-*.json"))]
        return sorted((w for w in out if w), key=lambda w: w.get("rank", 0))

    # -- backend marks

    def mark(self, name: str, **fields: Any) -> None:
        fields.setdefault("at", time.time())
        write_json(self.path / f"{name}.json", fields)

    def marked(self, name: str) -> dict[str, Any] | None:
        return read_json(self.path / f"{name}.json")

    # -- checkpoint requests (backend -> the run's processes)

    @property
    def checkpoint_request_path(self) -> Path:
        return self.path / CHECKPOINT_REQUEST_FILE

    def request_checkpoint(self, reason: str = "") -> int:
        """Ask the run to checkpoint now: bump the request's number (``seq``); returns it."""
        seq = checkpoint_request_seq(read_json(self.checkpoint_request_path)) + 1
        write_json(self.checkpoint_request_path, checkpoint_request(seq, time.time(), reason))
        os.chmod(self.checkpoint_request_path, 0o644)  # the run's processes (maybe another user) read it
        return seq

    def set_submitted(self) -> None:
        (self.path / "submitted").write_text(str(time.time()))

    def submitted(self) -> bool:
        return (self.path / "submitted").exists()


def latest_checkpoint_step(checkpoint_dir: str | None) -> int | None:
    """Step of the latest checkpoint Ray Train registered for a job (its checkpoint manager snapshot).

    Train apps report ``{"step": n}`` with every checkpoint; the snapshot is what Train itself
    restores from, so this is the step the next attempt resumes from.
    """
    if not checkpoint_dir or "://" in checkpoint_dir:
        return None
    snap = read_json(Path(checkpoint_dir) / TRAIN_RUN_NAME / "checkpoint_manager_snapshot.json")
    if not isinstance(snap, dict):
        return None
    latest = snap.get("latest_checkpoint_result") or {}
    metrics = latest.get("metrics") or {}
    if isinstance(metrics, str):
        try:
            metrics = json.loads(metrics)
        except ValueError:
            metrics = {}
    step = metrics.get("step") if isinstance(metrics, dict) else None
    return int(step) if isinstance(step, int | float) else None
