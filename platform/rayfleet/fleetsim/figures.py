"""The figures a fleet report is compared by across policies (docs/scale.md), computed from the
report itself (jobs, samples, cost) and the work each job was scripted to do.

- ``utilisationWhileBacklog``: at the samples where some job is queued, the accelerators held by
  admitted workloads over the fleet's accelerators (every pool at its most hosts), overall and per
  accelerator (None: no sample had a backlog);
- ``waitSeconds``: p50 and p99 (nearest rank) of the jobs' ``waitSeconds`` per priority class; a
  job still waiting at the end counts with its wait so far;
- ``preemptions``: interruptions of reason ``preempted`` over all jobs;
- ``goodput``: useful training accelerator-seconds over the accelerator-seconds the jobs' gangs
  ran (``runSeconds`` x hosts x accelerators per host of every attempt). A job's useful time is the
  work it kept: its whole scripted runtime when it succeeded, its last checkpoint's step x step
  time when it is still open or was stopped, nothing when it failed; times the accelerators of its
  last attempt's gang. What is lost: work redone after an interruption since the last checkpoint,
  failed runs, unfinished work past the last checkpoint;
- ``reservationIdleHostHours``: reserved host-hours no workload used (the cost report's lines);
- ``costByTeam``: the cost report's ``byTeam``;
- ``startEstimates``: how good the estimated starts were (``TrainJobStatus.estimatedStart``). Each
  job that waited gets judged on the first estimate of its first wait: it is *within* when its
  first admission came within :data:`ESTIMATE_TOLERANCE` of the estimated wait (measured from its
  submission) of the estimated start, or within :data:`ESTIMATE_FLOOR_S` for short waits.
  ``share`` is the within ones over the jobs that had an estimated time and were admitted (the
  issue's goal: at least 0.8); ``withoutTime`` counts the jobs whose first estimate was a reason
  only, ``notAdmitted`` those still waiting at the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..config import PlatformConfig


def _r(x: float, digits: int = 3) -> float:
    return round(x, digits) + 0.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def _accelerators_per_host(cfg: PlatformConfig, pool: str | None) -> int:
    p = cfg.pools.get(pool or "")
    return p.spec.accelerators_per_host if p is not None else 0


def utilisation_while_backlog(report: Mapping[str, Any], cfg: PlatformConfig) -> dict[str, Any]:
    queues = list(report["queues"].values())
    pools = report["pools"]
    n = min([len(s) for s in queues] + [len(s) for s in pools.values()], default=0)
    backlog = [i for i in range(n) if any(series[i]["queued"] for series in queues)]
    by_acc: dict[str, list[float]] = {}
    for pool, series in sorted(pools.items()):
        acc = cfg.pools[pool].spec.accelerator
        if acc is None or not series or not series[0]["acceleratorsMax"]:
            continue
        used = sum(series[i]["acceleratorsInUse"] for i in backlog)
        total = sum(series[i]["acceleratorsMax"] for i in backlog)
        got = by_acc.setdefault(acc.value, [0.0, 0.0])
        got[0] += used
        got[1] += total
    used = sum(u for u, _ in by_acc.values())
    total = sum(t for _, t in by_acc.values())
    return {"samplesWithBacklog": len(backlog), "samples": n,
            "overall": _r(used / total, 4) if total else None,
            "byAccelerator": {k: (_r(u / t, 4) if t else None) for k, (u, t) in sorted(by_acc.items())}}


def goodput(report: Mapping[str, Any], cfg: PlatformConfig, work: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """``work``: job name -> (scripted runtime seconds, seconds a step)."""
    useful = held = 0.0
    for j in report["jobs"]:
        attempts = j["flavors"]
        held += sum(a["runSeconds"] * a["hosts"] * _accelerators_per_host(cfg, a["pool"]) for a in attempts)
        if not attempts:
            continue
        last = attempts[-1]
        accels = last["hosts"] * _accelerators_per_host(cfg, last["pool"])
        runtime, step_time = work.get(j["name"], (0.0, 1.0))
        if j["state"] == "SUCCEEDED":
            kept = runtime
        elif j["state"] == "FAILED":
            kept = 0.0
        else:
            kept = min(runtime, (j["lastCheckpointStep"] or 0) * step_time)
        useful += kept * accels
    return {"usefulAcceleratorHours": _r(useful / 3600, 3), "heldAcceleratorHours": _r(held / 3600, 3),
            "ratio": _r(useful / held, 4) if held else None}


#: An admission is within the estimate when it is off by at most this share of the estimated wait...
ESTIMATE_TOLERANCE = 0.25
#: ...or by at most this many seconds (a controller pass or two: the simulator's clock steps).
ESTIMATE_FLOOR_S = 60.0


def start_estimates(report: Mapping[str, Any]) -> dict[str, Any]:
    estimated = within = without = not_admitted = 0
    errors: list[float] = []
    for j in report["jobs"]:
        first = j.get("firstEstimate")
        if first is None:
            continue
        if first["start"] is None:
            without += 1
            continue
        if j["firstAdmitted"] is None:
            not_admitted += 1
            continue
        estimated += 1
        wait = max(0.0, first["start"] - j["submitted"])
        off = abs(j["firstAdmitted"] - first["start"])
        errors.append(off)
        within += off <= max(ESTIMATE_TOLERANCE * wait, ESTIMATE_FLOOR_S)
    return {"judged": estimated, "within": within, "share": _r(within / estimated, 4) if estimated else None,
            "withoutTime": without, "notAdmitted": not_admitted,
            "errorSecondsP50": percentile(errors, 50), "errorSecondsP90": percentile(errors, 90),
            "tolerance": ESTIMATE_TOLERANCE, "floorSeconds": ESTIMATE_FLOOR_S}


def policy_figures(report: Mapping[str, Any], cfg: PlatformConfig, work: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """The comparison figures of one report (see the module's docstring)."""
    default_class = next((n for n, pc in cfg.priority_classes.items() if pc.spec.default), None)
    waits: dict[str, list[float]] = {}
    for j in report["jobs"]:
        waits.setdefault(j["priorityClass"] or default_class or "(none)", []).append(j["waitSeconds"])
    cost = report["cost"]
    return {
        "utilisationWhileBacklog": utilisation_while_backlog(report, cfg),
        "waitSeconds": {k: {"jobs": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99)} for k, v in sorted(waits.items())},
        "preemptions": sum(j["disruptionsByKind"].get("preempted", 0) for j in report["jobs"]),
        "goodput": goodput(report, cfg, work),
        "reservationIdleHostHours": _r(sum(i["idleHostHours"] for i in cost["reservationIdle"]), 3),
        "costByTeam": cost["byTeam"],
        "startEstimates": start_estimates(report),
    }
