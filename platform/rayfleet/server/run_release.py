"""Ended runs handed back to the backend (:class:`rayfleet.backends.base.ReleasingBackend`).

A run is released only after the write that records its end is committed, with the logs saved in
that transaction: a crash between the two leaves the run's objects behind, never a job whose run
is gone before its end is known (that would read as a lost run and launch it again). What a crash
leaves behind is swept when a controller starts leading: every run the backend lists that is not
the current attempt of an unfinished job (an ended job's, an older attempt's, a deleted job's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..api import JobState, TrainJob
from ..backends.base import Backend, ReleasingBackend, run_id_for
from .store import Store

log = logging.getLogger("rayfleet.controller")

UNFINISHED = [s.value for s in JobState if not s.terminal]


def release(backend: Backend, run_ids: Iterable[str]) -> int:
    """Release each run (a failure is logged and left to the next sweep); how many were asked."""
    if not isinstance(backend, ReleasingBackend):
        return 0
    n = 0
    for run_id in run_ids:
        n += 1
        try:
            backend.release_run(run_id)
        except Exception:   # the backend may be unreachable: the next start's sweep takes it
            log.warning("could not release run %s", run_id, exc_info=True)
    return n


def ended(job: TrainJob, before: JobState) -> str | None:
    """The run to release when a write takes ``job`` from ``before`` to an end."""
    if job.status.state.terminal and not before.terminal and job.status.attempt:
        return run_id_for(job.name, job.status.attempt, job.metadata.uid)
    return None


def sweep(store: Store, backend: Backend) -> bool:
    """Release every run the backend lists that no unfinished job's current attempt is; whether
    the backend could list them (if not, the next pass sweeps again)."""
    if not isinstance(backend, ReleasingBackend):
        return True
    try:
        listed = backend.list_runs()
    except Exception:
        log.warning("could not list the backend's runs to release those of ended jobs", exc_info=True)
        return False
    live = {run_id_for(r.name, r.doc.status.attempt, r.doc.metadata.uid)  # type: ignore[attr-defined]
            for r in store.list("TrainJob", states=UNFINISHED, shared=True) if r.doc.status.attempt}  # type: ignore[attr-defined]
    left = [run_id for run_id in listed if run_id not in live]
    if left:
        log.info("releasing %d run(s) of ended or deleted jobs left on the backend", len(left))
    release(backend, left)
    return True
