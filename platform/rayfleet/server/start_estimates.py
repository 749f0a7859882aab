"""The controller's estimated starts: what :func:`rayfleet.quota.estimate.estimate_starts` needs,
gathered from the jobs, and when to run it.

- **Run times of a kind**: a job's kind is its queue, its program (train app or entrypoint) and its
  gang (workers, resources per worker, accelerator). Each job that succeeds adds its run time
  (first start to end, interruptions included) to its kind's running average (exponentially
  weighted, so a kind whose runs change is followed). Kept in memory and learnt again when a
  controller starts leading, from the last ``RELEARN_RUNS`` successes in the store.
- **Expected run time** of a job: its kind's average, at most its ``maxRunDuration``; its
  ``maxRunDuration`` when its kind has no average; unknown otherwise.
- **Expected end** of a running job: its first start plus its expected run time; a job already
  past that is expected to run another quarter of what it has run so far.
- **The waiting set**: every job quota told to wait, kept until it leaves the queue, because a
  pass offers quota only its queues' heads (``queue_heads``): parked heads still wait, ahead of
  the newer ones, and the projection counts them.
- **When**: a projection when a job waits that has no estimate yet, and every ``REFRESH_S``
  while jobs wait; never two closer than ``NEW_WAIT_S`` or ``PER_WORKLOAD_S`` for each workload the
  last one replayed (running and waiting), whichever is longer. A projection costs about in
  proportion to the workloads it replays, so the share of the controller's time it takes stays
  bounded as the fleet grows; a large fleet's estimates are refreshed less often. A projection
  whose inputs have not moved (same workloads admitted and waiting, nothing it foresaw reached
  yet) is kept rather than run again.

Jobs deeper in their queue than the heads quota looked at have no estimate yet (``Queued``);
services are expected to hold their quota until they are deleted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..api import JobState, TrainJob, TrainJobStatus
from ..quota import QuotaState, Workload
from ..quota.estimate import Estimate, estimate_starts
from ..quota.schedule import next_change

#: The longest the estimates go without a projection while jobs wait (seconds of the clock).
REFRESH_S = 30.0
#: The shortest time between two projections (a newly waiting job waits at most this for its estimate).
NEW_WAIT_S = 5.0
#: The gap between two projections grows by this for each workload the last one replayed (seconds).
PER_WORKLOAD_S = 0.05
#: Weight of the latest run in its kind's running average.
ALPHA = 0.3
#: The successes a starting controller learns run times from (the newest; with ALPHA 0.3 a kind's
#: average is all but its last ten runs').
RELEARN_RUNS = 2000


def kind_of(job: TrainJob) -> tuple[Any, ...]:
    s = job.spec
    # the program as its arguments make it: a train app's module with its config, else the command line
    program = (s.train_app.module, json.dumps(s.train_app.config, sort_keys=True, default=str)) if s.train_app is not None else s.entrypoint
    return (s.queue, program, s.gang.workers, tuple(sorted(s.gang.resources_per_worker.items())),
            s.gang.accelerator.value if s.gang.accelerator is not None else None)


class StartEstimates:
    def __init__(self) -> None:
        self.averages: dict[tuple[Any, ...], float] = {}
        self.waiting: dict[str, Workload] = {}      # jobs quota told to wait, by name
        self.runtimes: dict[str, float | None] = {}  # and their expected run times
        self.current: dict[str, Estimate] = {}       # the last projection's estimates, by name
        self._last: float | None = None
        self._replayed = 0                            # workloads the last projection replayed
        self._learned = 0                             # run times learned so far (a projection depends on them)
        self._key: tuple[Any, ...] | None = None      # what the last projection depended on...
        self._valid_until = math.inf                  # ...and the first moment it foresaw

    # ------------------------------------------------------------ what the controller tells it

    def changed(self, job: TrainJob, st: TrainJobStatus) -> None:
        """A transition of ``job`` to status ``st``: a success teaches its kind's run time; a job
        that leaves the queue leaves the waiting set."""
        if st.state == JobState.QUEUED:
            return
        self.waiting.pop(job.name, None)
        self.runtimes.pop(job.name, None)
        self.current.pop(job.name, None)
        if st.state == JobState.SUCCEEDED:
            self._learn(job, st)

    def relearn(self, succeeded: Iterable[TrainJob]) -> None:
        """Forget the run times learnt and learn them from ``succeeded`` (in the order they ended)."""
        self.averages.clear()
        self._learned += 1
        for job in sorted(succeeded, key=lambda j: j.status.finished_at.timestamp() if j.status.finished_at else 0.0):
            self._learn(job, job.status)

    def _learn(self, job: TrainJob, st: TrainJobStatus) -> None:
        if st.started_at is None or st.finished_at is None:
            return
        run = (st.finished_at - st.started_at).total_seconds()
        key = kind_of(job)
        old = self.averages.get(key)
        self.averages[key] = run if old is None else old + ALPHA * (run - old)
        self._learned += 1

    def told_to_wait(self, job: TrainJob, wl: Workload) -> None:
        self.waiting[job.name] = wl
        self.runtimes[job.name] = self.expected_run(job)

    def forget(self) -> None:
        self.waiting.clear()
        self.runtimes.clear()
        self.current.clear()
        self._last = None
        self._replayed = 0
        self._key = None

    # ------------------------------------------------------------ expectations

    def expected_run(self, job: TrainJob) -> float | None:
        avg, cap = self.averages.get(kind_of(job)), job.spec.max_run_duration
        if avg is None:
            return cap
        return avg if cap is None else min(avg, cap)

    def expected_end(self, job: TrainJob, now: float) -> float | None:
        run = self.expected_run(job)
        if run is None:
            return None
        started = job.status.started_at.timestamp() if job.status.started_at is not None else now
        end = started + run
        return end if end > now else now + 0.25 * (now - started)

    # ------------------------------------------------------------ projections

    def due(self, now: float) -> bool:
        if not self.waiting:
            return False
        if self._last is None:
            return True
        gap = max(NEW_WAIT_S, PER_WORKLOAD_S * self._replayed)
        new = any(name not in self.current for name in self.waiting)
        return now - self._last >= (gap if new else max(REFRESH_S, gap))

    def refresh(self, state: QuotaState, holding: Callable[[], Iterable[TrainJob]], now: float, *,
                one_head_per_queue: bool = False) -> Mapping[str, Estimate]:
        """Project from ``state`` (after this pass's cycle) with ``holding()`` (the jobs that hold
        quota) and the waiting set; the estimates replace the last ones.

        The last projection is kept, and ``holding`` not read, while nothing it depended on moved:
        the same workloads admitted (on the same flavors) and waiting, the same run times learned,
        the same config, and no moment it foresaw reached yet (an expected end, an estimated start,
        a quota schedule's change)."""
        self._last = now
        extra = [wl for name, wl in self.waiting.items() if name not in state.pending and not state.is_admitted(name)]
        key = (id(state.config), frozenset((wid, a.flavor) for wid, a in state.admitted.items()), frozenset(state.pending),
               frozenset(wl.id for wl in extra), self._learned)
        if key == self._key and now < self._valid_until:
            return self.current
        ends = {job.name: self.expected_end(job, now) for job in holding()}
        self._replayed = len(ends) + len(state.pending) + len(extra)
        runtimes = self.runtimes
        self.current = estimate_starts(state, now, ends=ends, runtime=lambda wid: runtimes.get(wid), extra_pending=extra,
                                       one_head_per_queue=one_head_per_queue)
        foreseen = [t for t in ends.values() if t is not None and t > now]
        foreseen += [e.at for e in self.current.values() if e.at is not None and e.at > now]
        if (edge := next_change(state.config, now)) is not None:
            foreseen.append(edge)
        self._key, self._valid_until = key, min(foreseen, default=math.inf)
        return self.current
