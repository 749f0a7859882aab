"""Reliability of a job from its interruption history: MTTR and MTBI. Pure (no Ray, no I/O).

- An *interruption* is one :class:`rayfleet.api.Interruption`: the gang stopped at ``at``
  (preempted, host failure, failure, capacity) and, once the next attempt was running again,
  ``recovered_at`` is set.
- **MTTR** (mean time to recover) = mean of ``recovered_at - at`` over recovered interruptions.
- **MTBI** (mean time between interruptions) = running time / number of interruptions, where
  running time is the time since the job first started minus the time spent recovering
  (an interruption not yet recovered counts as down until ``until``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..api import Interruption


@dataclass(frozen=True)
class Reliability:
    interruptions: int                 # all interruptions so far
    recovered: int                     # of which the job recovered from
    mttr_s: float | None               # None: nothing recovered yet
    mtbi_s: float | None               # None: never interrupted
    uptime_s: float                    # running time since the first start
    downtime_s: float                  # time spent interrupted
    by_reason: dict[str, int]          # interruptions per reason

    def as_dict(self) -> dict[str, object]:
        return {
            "interruptions": self.interruptions,
            "recovered": self.recovered,
            "mttrSeconds": self.mttr_s,
            "mtbiSeconds": self.mtbi_s,
            "uptimeSeconds": self.uptime_s,
            "downtimeSeconds": self.downtime_s,
            "byReason": dict(self.by_reason),
        }


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def reliability(started_at: datetime | None, interruptions: Sequence[Interruption], *, until: datetime) -> Reliability:
    """MTTR/MTBI of a job that first ran at ``started_at``, observed up to ``until`` (the clock:
    now, or the job's ``finished_at`` for a finished job). rayfleet's one definition: ``/metrics``
    (``rayfleet_job_mttr_seconds``, ``rayfleet_job_mtbi_seconds``) reports these."""
    end = _aware(until)
    by_reason: dict[str, int] = {}
    for i in interruptions:
        by_reason[i.reason] = by_reason.get(i.reason, 0) + 1
    if started_at is None:
        return Reliability(len(interruptions), 0, None, None, 0.0, 0.0, by_reason)
    start = _aware(started_at)
    span = max(0.0, (end - start).total_seconds())
    downtime = 0.0
    repairs = []
    for i in sorted(interruptions, key=lambda x: _aware(x.at)):
        at = max(_aware(i.at), start)
        back = _aware(i.recovered_at) if i.recovered_at is not None else end
        down = max(0.0, (min(back, end) - at).total_seconds())
        downtime += down
        if i.recovered_at is not None:
            repairs.append(max(0.0, (_aware(i.recovered_at) - _aware(i.at)).total_seconds()))
    downtime = min(downtime, span)
    uptime = span - downtime
    n = len(interruptions)
    return Reliability(
        interruptions=n,
        recovered=len(repairs),
        mttr_s=sum(repairs) / len(repairs) if repairs else None,
        mtbi_s=uptime / n if n else None,
        uptime_s=uptime,
        downtime_s=downtime,
        by_reason=by_reason,
    )


def record_recovery(interruptions: Sequence[Interruption], at: datetime, resumed_from_step: int | None) -> list[Interruption]:
    """The history with its latest unrecovered interruption marked recovered at ``at``
    (the next attempt is running again, resumed from ``resumed_from_step``)."""
    out = list(interruptions)
    for idx in range(len(out) - 1, -1, -1):
        if out[idx].recovered_at is None:
            out[idx] = replace_interruption(out[idx], recovered_at=at, resumed_from_step=resumed_from_step)
            break
    return out


def replace_interruption(i: Interruption, **changes: object) -> Interruption:
    return i.model_copy(update=changes)


__all__ = ["Reliability", "record_recovery", "reliability", "replace_interruption"]
