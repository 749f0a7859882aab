"""Policies compared on a GKE-scale fleet trace (issue 14, docs/scale.md).

Writes a trace the way ``rayfleet simulate trace`` does (the same generator and files, from one
seed), loads it as ``rayfleet simulate fleet`` does, and runs it under each policy (static quotas,
Kueue semantics, rayfleet; ``fleetsim/policies.py``) through the real store, quota layer,
controller and service manager on simulated time. Prints per policy the wall time and the report's
figures (utilisation while a backlog exists, wait p50/p99 per priority class, preemptions,
goodput, reservation idle host-hours, cost), and ends with one JSON line: the size run, the
figures, and the target: the 7-day, 10,000-GPU simulation of one policy in under 5 minutes of wall
time, judged (``met``) only when that full size ran (``--full``, or ``--gpus 10000 --teams 100 --days 7``);
a smaller run says ``met: null``. The default is a small trace (500 GPUs, 10 teams, 6 hours) so that
``make bench`` ends in minutes: the full size did not finish in 900 s here (docs/scale.md says what
was measured and where the time goes). It also prints how good the estimated starts were on the
rayfleet policy (``figures.startEstimates``, issue 16's goal: 80% of the judged admissions within
25% of the first estimate), judged (``estimate_met``) when at least 20 admissions were judged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from rayfleet.config import load_config
from rayfleet.fleetsim import POLICIES, load_fleet_scenario, simulate_fleet
from rayfleet.fleetsim.trace import generate, problems, render

FULL = {"gpus": 10000, "teams": 100, "days": 7.0}
SMALL = {"gpus": 500, "teams": 10, "days": 0.25}
TARGET_WALL_S = 300.0
#: issue 16's goal for the estimated starts: this share of the judged admissions within the tolerance
ESTIMATE_GOAL_SHARE = 0.8
#: fewer judged admissions than this say nothing about the share: not judged
ESTIMATE_MIN_JUDGED = 20


def _estimates(e: dict) -> str:
    if not e["judged"]:
        return f"no estimated start judged ({e['withoutTime']} reason only)"
    return (f"estimated starts {_fmt(e['share'], True)} within (of {e['judged']}; error p50 {_fmt(e['errorSecondsP50'])} s, "
            f"p90 {_fmt(e['errorSecondsP90'])} s; {e['withoutTime']} reason only, {e['notAdmitted']} not admitted)")


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="The issue's full size: 10,000 GPUs, 100 teams, 7 days (judged).")
    ap.add_argument("--gpus", type=int, default=SMALL["gpus"])
    ap.add_argument("--teams", type=int, default=SMALL["teams"])
    ap.add_argument("--days", type=float, default=SMALL["days"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--policies", default=",".join(POLICIES), help="Comma-separated policies to run (default: all three).")
    ap.add_argument("--until", type=float, default=None,
                    help="Stop each policy's run at this many simulated seconds (the first hours of a long trace; never judged).")
    args = ap.parse_args()
    if args.full:
        args.gpus, args.teams, args.days = FULL["gpus"], FULL["teams"], FULL["days"]
    logging.getLogger("rayfleet").setLevel(logging.ERROR)   # the controller's warnings (hosts cordoned) are the trace's own faults
    policies = [p for p in args.policies.split(",") if p]
    bad = problems(args.gpus, args.teams, args.days) + [f"--policies: unknown policy {p!r}" for p in policies if p not in POLICIES]
    if args.until is not None and not 0 < args.until <= args.days * 86400:
        bad.append(f"--until: must be more than 0 and at most the trace's {args.days * 86400:g} simulated seconds, got {args.until:g}")
    if bad:
        for b in bad:
            print(f"error: {b}", file=sys.stderr)
        sys.exit(2)
    t = time.perf_counter()
    trace = generate(args.gpus, args.teams, args.days, args.seed)
    config_text, scenario_text = render(trace)
    with tempfile.TemporaryDirectory(prefix="rayfleet-fleet-bench-") as d:
        (Path(d) / "config.yaml").write_text(config_text)
        (Path(d) / "scenario.yaml").write_text(scenario_text)
        cfg = load_config([Path(d) / "config.yaml"])
        scenario = load_fleet_scenario(Path(d) / "scenario.yaml")
    trace_s = time.perf_counter() - t
    s = trace.summary
    print(f"trace: {s['accelerators']} accelerators on {s['hosts']} hosts, {s['teams']} teams, {s['jobs']} jobs, "
          f"{s['services']} services over {args.days:g} days (seed {args.seed}); written and loaded in {trace_s:.1f}s", flush=True)
    out: dict[str, dict] = {}
    for p in policies:
        t = time.perf_counter()
        report = simulate_fleet(cfg, scenario, policy=p, until=args.until)
        wall = time.perf_counter() - t
        f = report["figures"]
        u = f["utilisationWhileBacklog"]
        waits = {c: {"p50": w["p50"], "p99": w["p99"]} for c, w in f["waitSeconds"].items()}
        out[p] = {"wall_s": round(wall, 2), "simulated_s": report["seconds"], "stoppedBy": report["stoppedBy"],
                  "controllerPasses": report["controllerPasses"], "byState": report["summary"]["byState"],
                  "utilisationWhileBacklog": u["overall"], "utilisationByAccelerator": u["byAccelerator"],
                  "waitSeconds": waits, "preemptions": f["preemptions"], "goodput": f["goodput"]["ratio"],
                  "usefulAcceleratorHours": f["goodput"]["usefulAcceleratorHours"], "heldAcceleratorHours": f["goodput"]["heldAcceleratorHours"],
                  "reservationIdleHostHours": f["reservationIdleHostHours"], "totalUsd": report["cost"]["totalUsd"],
                  "costByTeam": f["costByTeam"], "startEstimates": f["startEstimates"]}
        wait_text = ", ".join(f"{c} p50 {_fmt(w['p50'])} s / p99 {_fmt(w['p99'])} s" for c, w in waits.items())
        print(f"{p:>8}: {wall:7.1f}s wall for {report['seconds'] / 86400:g} simulated days ({report['controllerPasses']} passes), "
              f"jobs {report['summary']['byState']}; utilisation while backlog {_fmt(u['overall'], True)}; wait {wait_text}; "
              f"preemptions {f['preemptions']}; goodput {_fmt(f['goodput']['ratio'], True)}; reservation idle "
              f"{f['reservationIdleHostHours']:.1f} host-h; cost ${report['cost']['totalUsd']:.2f} over {len(f['costByTeam'])} teams; "
              f"{_estimates(f['startEstimates'])}", flush=True)
    full = args.gpus == FULL["gpus"] and args.teams == FULL["teams"] and args.days == FULL["days"] and args.until is None
    worst = max((r["wall_s"] for r in out.values()), default=None)
    print(f"target: one policy's {FULL['days']:g}-day {FULL['gpus']}-GPU simulation in <= {TARGET_WALL_S:.0f}s wall; "
          + (f"slowest policy here {worst:.1f}s" if full and worst is not None else "not judged (a smaller trace ran)"))
    est = out.get("rayfleet", {}).get("startEstimates")
    est_met = None if est is None or est["judged"] < ESTIMATE_MIN_JUDGED else est["share"] >= ESTIMATE_GOAL_SHARE
    print(f"estimated starts (rayfleet policy): goal >= {100 * ESTIMATE_GOAL_SHARE:.0f}% of admissions within "
          f"+-{100 * (est or {}).get('tolerance', 0.25):.0f}% of the first estimate; "
          + ("not judged (no rayfleet run or fewer than " + str(ESTIMATE_MIN_JUDGED) + " judged)" if est_met is None else f"{_fmt(est['share'], True)} here"))
    print(json.dumps({"benchmark": "fleet", "size": {"gpus": args.gpus, "teams": args.teams, "days": args.days, "seed": args.seed, "until_s": args.until,
                                                     "accelerators": s["accelerators"], "jobs": s["jobs"], "services": s["services"]},
                      "full_size": full, "trace_s": round(trace_s, 2), "policies": out,
                      "target_wall_s_per_policy": TARGET_WALL_S, "target_size": FULL,
                      "met": (worst is not None and worst <= TARGET_WALL_S) if full else None,
                      "estimate_goal_share": ESTIMATE_GOAL_SHARE, "estimate_met": est_met}))


if __name__ == "__main__":
    main()
