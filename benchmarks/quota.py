"""Quota benchmark: rayfleet's batch cycle against a one-head-per-queue-per-cycle variant of the
same code (Kueue's cycle shape), on the shapes of Kueue's scheduler performance tests
(test/performance/scheduler/configs/{baseline,large-scale}/generator.yaml).

Scenarios (all workloads pending at t=0: the backlog; ``created`` follows Kueue's creation
intervals, so queue order is Kueue's):

- baseline: 5 cohorts x 6 queues (30), nominalQuota 20 cpu, borrowingLimit 100,
  reclaimWithinCohort Any, withinClusterQueue LowerPriority; per queue 350 small (1 cpu,
  priority 50, 200 ms), 100 medium (5 cpu, priority 100, 500 ms), 50 large (20 cpu, priority 200,
  1 s): 15,000 workloads.
- large: 20 cohorts x 50 queues (1,000), same quotas and policies; per queue 33 small (50 ms),
  12 medium (100 ms), 5 large (200 ms): 50,000 workloads.

Figures, for each cycle variant:

- ``backlog_cycle_ms``: wall time of one cycle over the full backlog (a fresh state; median of 3);
- ``decisions_per_s``: decisions (admit + preempt + wait) per second of scheduler wall time while
  draining the backlog; ``admissions_per_s`` likewise for admissions only;
- ``drain_s``: simulated time until every workload has run to completion. A cycle takes
  ``--cycle-latency`` simulated seconds (the controller's round trip: sync, decide, act; the same
  for both variants); admitted workloads then run for their runtime; finished ones release their
  quota; preempted ones are submitted again. A new cycle starts as soon as the previous one ends
  if anything changed (or, one-head variant, heads remain), else at the next completion.

The last line printed is one JSON object with every figure and the ratios (one-head / batch for
drain time; batch / one-head for decisions per second).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from rayfleet.quota import (  # noqa: E402
    CohortConfig,
    PodSet,
    PreemptionConfig,
    PreemptionPolicy,
    QueueConfig,
    QuotaConfig,
    QuotaState,
    ResourceQuota,
    Workload,
)


@dataclass(frozen=True)
class WorkloadClass:
    name: str
    count: int
    interval_s: float
    runtime_s: float
    priority: int
    cpu: int  # cores


SCENARIOS = {
    "baseline": dict(
        cohorts=5,
        queues_per_cohort=6,
        classes=(
            WorkloadClass("small", 350, 0.1, 0.2, 50, 1),
            WorkloadClass("medium", 100, 0.5, 0.5, 100, 5),
            WorkloadClass("large", 50, 1.2, 1.0, 200, 20),
        ),
    ),
    "large": dict(
        cohorts=20,
        queues_per_cohort=50,
        classes=(
            WorkloadClass("small", 33, 0.02, 0.05, 50, 1),
            WorkloadClass("medium", 12, 0.05, 0.1, 100, 5),
            WorkloadClass("large", 5, 0.2, 0.2, 200, 20),
        ),
    ),
}


def build(name: str) -> tuple[QuotaConfig, list[Workload], dict[str, float]]:
    spec = SCENARIOS[name]
    queues, cohorts = [], []
    workloads: list[Workload] = []
    runtime: dict[str, float] = {}
    for c in range(spec["cohorts"]):
        cohorts.append(CohortConfig(f"cohort-{c}"))
        for k in range(spec["queues_per_cohort"]):
            qname = f"cq-{c}-{k}"
            queues.append(
                QueueConfig(
                    name=qname,
                    flavors=("default",),
                    quotas={("default", "cpu"): ResourceQuota(20_000, 100_000)},
                    cohort=f"cohort-{c}",
                    preemption=PreemptionConfig(
                        within_cluster_queue=PreemptionPolicy.LOWER_PRIORITY,
                        reclaim_within_cohort=PreemptionPolicy.ANY,
                    ),
                )
            )
            for cls in spec["classes"]:
                for j in range(cls.count):
                    wid = f"{qname}-{cls.name}-{j}"
                    workloads.append(
                        Workload(wid, qname, (PodSet(1, {"cpu": cls.cpu * 1000}),), priority=cls.priority, created=j * cls.interval_s)
                    )
                    runtime[wid] = cls.runtime_s
    return QuotaConfig(tuple(queues), tuple(cohorts)), workloads, runtime


def backlog_cycle(cfg: QuotaConfig, workloads: list[Workload], one_head: bool, repeat: int = 3) -> dict:
    """One cycle over the full backlog, on a fresh state each time (median of ``repeat``)."""
    cpu, wall = [], []
    for _ in range(repeat):
        state = QuotaState(cfg)
        for w in workloads:
            state.submit(w)
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        state.schedule(0.0, one_head_per_queue=one_head)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {
        "backlog_cycle_cpu_ms": round(statistics.median(cpu) * 1000, 2),
        "backlog_cycle_wall_ms": round(statistics.median(wall) * 1000, 2),
    }


def drain(cfg: QuotaConfig, workloads: list[Workload], runtime: dict[str, float], one_head: bool, latency: float) -> dict:
    state = QuotaState(cfg)
    by_id = {w.id: w for w in workloads}
    for w in workloads:
        state.submit(w)
    gc.collect()
    running: list[tuple[float, str]] = []  # (finish time, id); stale entries skipped
    live: dict[str, float] = {}
    now = 0.0
    cycles = decisions = admissions = preemptions = 0
    wall = cpu = 0.0
    done = 0
    total = len(workloads)
    while done < total:
        c0, w0 = time.process_time(), time.perf_counter()
        res = state.schedule(now, one_head_per_queue=one_head)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        cycles += 1
        decisions += res.decisions
        admissions += len(res.admitted)
        preemptions += len(res.preempted)
        end = now + latency
        for p in res.preempted:
            live.pop(p.victim_id, None)
            state.submit(by_id[p.victim_id])
        for a in res.admitted:
            finish = end + runtime[a.workload_id]
            live[a.workload_id] = finish
            heapq.heappush(running, (finish, a.workload_id))
        now = end
        released = _release_until(state, running, live, now)
        done += released
        if res.more or released or res.preempted:
            continue
        # Nothing will change before the next completion.
        while running and live.get(running[0][1]) != running[0][0]:
            heapq.heappop(running)
        if not running:
            if done < total:
                raise RuntimeError(f"stuck: {total - done} workloads can never finish")
            break
        now = max(now, running[0][0])
        done += _release_until(state, running, live, now)
    return {
        "drain_s": round(now, 3),
        "cycles": cycles,
        "decisions": decisions,
        "admissions": admissions,
        "preemptions": preemptions,
        "scheduler_cpu_s": round(cpu, 3),
        "scheduler_wall_s": round(wall, 3),
        "decisions_per_s": round(decisions / cpu) if cpu else None,
        "admissions_per_s": round(admissions / cpu) if cpu else None,
        "decisions_per_wall_s": round(decisions / wall) if wall else None,
    }


def _release_until(state: QuotaState, running: list, live: dict, now: float) -> int:
    n = 0
    while running and running[0][0] <= now:
        finish, wid = heapq.heappop(running)
        if live.get(wid) == finish:
            del live[wid]
            state.release(wid)
            n += 1
    return n


def run_scenario(name: str, latency: float) -> dict:
    cfg, workloads, runtime = build(name)
    out: dict = {"workloads": len(workloads), "queues": len(cfg.queues), "cohorts": len(cfg.cohorts)}
    for variant, one_head in (("batch", False), ("one_head", True)):
        bc = backlog_cycle(cfg, workloads, one_head)
        d = drain(cfg, workloads, runtime, one_head, latency)
        out[variant] = {**bc, **d}
        print(
            f"{name:9s} {variant:9s} backlog cycle {bc['backlog_cycle_cpu_ms']:7.1f} ms cpu ({bc['backlog_cycle_wall_ms']:.1f} wall) | "
            f"drain {d['drain_s']:7.2f} s simulated, {d['cycles']:5d} cycles | {d['decisions_per_s'] or 0:>9,} decisions/s, "
            f"{d['admissions_per_s'] or 0:>7,} admissions/s ({d['scheduler_cpu_s']:.2f} s cpu, {d['scheduler_wall_s']:.2f} s wall)",
            flush=True,
        )
    b, h = out["batch"], out["one_head"]
    out["ratio"] = {
        "drain_one_head_over_batch": round(h["drain_s"] / b["drain_s"], 2) if b["drain_s"] else None,
        "decisions_per_s_batch_over_one_head": round(b["decisions_per_s"] / h["decisions_per_s"], 2)
        if h["decisions_per_s"]
        else None,
        "admissions_per_s_batch_over_one_head": round(b["admissions_per_s"] / h["admissions_per_s"], 2)
        if h["admissions_per_s"]
        else None,
    }
    print(
        f"{name:9s} ratio     drain one-head/batch {out['ratio']['drain_one_head_over_batch']}x, "
        f"decisions/s batch/one-head {out['ratio']['decisions_per_s_batch_over_one_head']}x",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    ap.add_argument("--cycle-latency", type=float, default=0.1, help="simulated seconds one cycle takes (default 0.1)")
    args = ap.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    result: dict = {"benchmark": "quota", "cycle_latency_s": args.cycle_latency, "python": sys.version.split()[0]}
    for name in names:
        result[name] = run_scenario(name, args.cycle_latency)
    if "baseline" in result:
        base = result["baseline"]["batch"]
        result["targets"] = {
            "baseline_decisions_per_s_min": 50_000,
            "baseline_decisions_per_s": base["decisions_per_s"],
            "baseline_backlog_cycle_ms_max": 100,
            "baseline_backlog_cycle_ms": base["backlog_cycle_cpu_ms"],
            "met": bool(base["decisions_per_s"] >= 50_000 and base["backlog_cycle_cpu_ms"] < 100),
        }
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
