"""DWS calendar windows at admission and before they close (pure; ``now`` is an argument).

A flavor whose pool is ``dws-calendar`` has hosts only inside its booked window. The controller
asks :func:`offered` before it hands a job's flavors to quota, so quota never admits work there:

* before the window opens, or once its drain time has begun (``window.end - drainBefore``), or
  after it closes;
* for a job that cannot end before the drain time begins (the rest of its ``spec.maxRunDuration``
  runs past ``end - drainBefore``, or it has no maxRunDuration at all), unless it **checkpoints**.

A job *checkpoints* when it is a train app (``spec.trainApp``: rayfleet's TorchTrainer launcher
saves checkpoints and honours a checkpoint request, see ``rayfleet.train.notice``) or names where
its checkpoints go (``spec.checkpoint.storagePath``: the user says the entrypoint writes there).
A plain ``entrypoint`` job without a storage path is assumed not to, so moving it would lose its
work. A job that checkpoints may be admitted late in a window: before the drain time it is asked
to checkpoint and moved (:func:`drain_deadline`, the controller's window-end notice).
"""

from __future__ import annotations

from ..api import PoolSpec, TrainJob
from . import provisioning


def _window(spec: PoolSpec) -> tuple[float, float, float] | None:
    """(start, end, end - drain time) of a calendar pool, in epoch seconds, from the one reading of
    a window (``provisioning.window_bounds`` / ``drain_at``); None for any other pool."""
    bounds, drain_at = provisioning.window_bounds(spec), provisioning.drain_at(spec)
    if bounds is None or drain_at is None:
        return None
    return bounds[0], bounds[1], bounds[1] - drain_at


def checkpoints(job: TrainJob) -> bool:
    """Whether the job can checkpoint and move (see the module docs)."""
    return job.spec.train_app is not None or job.spec.checkpoint.storage_path is not None


def offered(spec: PoolSpec, job: TrainJob, now: float) -> bool:
    """Whether quota may admit ``job`` on a flavor of pool ``spec`` now (always, for a pool that
    is not a calendar window)."""
    w = _window(spec)
    if w is None:
        return True
    start, end, drain = w
    if now < start or now >= end - drain:
        return False
    if checkpoints(job):
        return True
    limit = job.spec.max_run_duration
    if limit is None:
        return False
    started = job.status.started_at
    left = float(limit) - (now - started.timestamp() if started is not None else 0.0)
    return now + left <= end - drain


def why_not(spec: PoolSpec, job: TrainJob, now: float) -> str | None:
    """Why :func:`offered` says no (None when it says yes), for the job's status."""
    w = _window(spec)
    if w is None or offered(spec, job, now):
        return None
    start, end, drain = w
    if now < start:
        return f"calendar window opens in {start - now:.0f}s"
    if now >= end - drain:
        return "calendar window is closing" if now < end else "calendar window closed"
    return f"cannot end before the calendar window drains in {end - drain - now:.0f}s and does not checkpoint"


def has_window(spec: PoolSpec) -> bool:
    """The pool's capacity comes in calendar windows (a DWS calendar pool): work there is drained
    as a window closes (:func:`drain_deadline`)."""
    return _window(spec) is not None


def drain_deadline(spec: PoolSpec, now: float) -> float | None:
    """The window's end once its drain time has begun (``now >= end - drainBefore``): running work
    there gets a window-end notice with this deadline. None before that, or for other pools."""
    w = _window(spec)
    if w is None:
        return None
    _, end, drain = w
    return end if now >= end - drain else None
