"""The KubeRay backend at scale (issue 14): N jobs (default 1,000) through ``Fleet.submit_job``, the
real controller and the real ``KubeRayBackend`` (the official kubernetes client, its watches and
its request budget) against the fake API server of the tests, with the fake KubeRay operator
reconciling RayJobs onto kwok-style fake Nodes (``tests/kuberay/fake_kuberay_operator.py``; KubeRay's
own performance tests run the real operator on kwok nodes the same way). The fake server counts
every request, by verb and resource, as kube-apiserver's ``apiserver_request_total`` does; the
fake operator works on the server's memory, so every request counted is rayfleet's.

Platform (``tests/kuberay/kuberay_fleet.py``): a CPU pool of 64 hosts and a T4 pool of 16, four
queues sharing them; jobs of one CPU host, two-host CPU gangs and one-host T4 jobs, each worker a
whole host, running 1 to 3 s once their pods are bound (several controller passes: what polling
pays for); RayClusters deleted 1 s after their
job ends (``ttlSecondsAfterFinished``), so the next gang's pods wait for the nodes meanwhile.

Figures: jobs completed, wall time from the first submission to the last job finished, the
controller's throughput (jobs/s), API requests per job attempt by verb and resource, peak
requests in any 1 s window and the mean rate against the budget (``clientConnection``: Kueue's
300 QPS, burst 500), the watches' lists, re-lists (410 Gone) and watch requests. Baseline, measured
in the same run: the same backend with ``watch=False`` (every pass asks the API server for each
running job's RayJob, pods, ProvisioningRequest and Nodes: the polling this replaces) on
``--baseline-jobs`` jobs.

Also the cost of one controller pass with 60 jobs RUNNING, polling and watched (driven by hand:
``run_once`` once everything runs): the requests it sends and its time.

Targets: every job completes, none is launched twice; a watched pass sends no request; requests stay within the budget (any window
of T seconds holds at most burst + qps x T, T = 1 and 10 s); at most 4 requests per attempt: the
3 an attempt needs (create its notice ConfigMap, create its RayJob, read its logs through the API
server's service proxy once it ends) plus one for the watches' lists and watch renewals, shared by
all attempts. The last line printed is one JSON object with every figure and whether the targets
are met.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(ROOT / "tests" / "kuberay"))   # the fake API server and the fake KubeRay operator (test helpers)

import kuberay_fleet as kf  # noqa: E402

from rayfleet.api import JobState  # noqa: E402

CALLS_PER_ATTEMPT_MAX = 6   # create its ConfigMap and RayJob, read its logs, delete both once its end is stored, + watches
TTL_S = 1
RUNTIME_S = (1.0, 3.0)
PASS_RUNNING = 60


def peak_window(times: list[float], width: float) -> int:
    """The most requests in any window of ``width`` seconds."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def run_once(jobs: int, *, watch: bool, interval: float, timeout: float, qps: float, burst: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="rf-kuberay-scale-"))
    run = kf.start(work, jobs=jobs, cpu_hosts=64, t4_hosts=16, queues=4, qps=qps, burst=burst, ttl_s=TTL_S, runtime=RUNTIME_S,
                   interval=interval, watch=watch, max_events=10_000, validate=False)
    try:
        t_req = len(run.api.request_times)
        kf.submit_all(run)
        done = kf.wait_done(run, timeout)
        recs = run.fleet.store.list("TrainJob")
        last = max((r.doc.status.finished_at.timestamp() for r in recs if r.doc.status.finished_at), default=time.time())
        wall = last - run.submitted_at
        calls = kf.calls_since(run)
        times = run.api.request_times[t_req:]
        attempts = sum(run.operator.created.values())
        total = sum(calls.values())
        span = (times[-1] - times[0]) if len(times) > 1 else 0.0
        succeeded = sum(1 for r in recs if r.doc.status.state == JobState.SUCCEEDED)
        bucket = run.backend.kube.bucket
        return {
            "mode": "watch" if watch else "poll", "jobs": jobs, "finished": done, "succeeded": succeeded,
            "launched_twice": sum(1 for n in run.operator.created.values() if n > 1),
            "attempts": attempts, "wall_s": round(wall, 2), "jobs_per_s": round(succeeded / wall, 2) if wall > 0 else None,
            "passes": run.fleet.controller.cycles, "controller_error": run.fleet.controller.last_error,
            "requests": total, "requests_per_attempt": round(total / attempts, 3) if attempts else None,
            "per_attempt": {f"{v} {r}": round(n / attempts, 3) for (v, r), n in sorted(calls.items(), key=lambda kv: -kv[1])} if attempts else {},
            "by_verb": dict(sum((Counter({v: n}) for (v, _), n in calls.items()), Counter())),
            "peak_1s": peak_window(times, 1.0), "peak_10s": peak_window(times, 10.0),
            "mean_qps": round(total / span, 1) if span > 0 else None,
            "client_waits": bucket.waited if bucket else None, "client_wait_s": round(bucket.waited_s, 2) if bucket else None,
            "watches": run.backend.cache.counters() if run.backend.cache else None,
            "peak_clusters": run.operator.peak_running,
        }
    finally:
        run.close()


def pass_cost(running: int, *, watch: bool) -> dict:
    """Requests of one controller pass with ``running`` jobs RUNNING (long runs), driven by hand."""
    work = Path(tempfile.mkdtemp(prefix="rf-kuberay-pass-"))
    run = kf.start(work, jobs=running, cpu_hosts=64, t4_hosts=16, queues=4, runtime=(3600.0, 3600.0), watch=watch, validate=False)
    try:
        c = run.fleet.controller
        run.backend.start_watching(c.wake)
        for job in run.jobs:
            run.fleet.submit_job(job, kf.ADMIN)
        deadline = time.time() + 60
        while time.time() < deadline and run.fleet.store.count("TrainJob", [JobState.RUNNING.value]) < running:
            c.run_once(time.time())
            time.sleep(0.05)
        ran = run.fleet.store.count("TrainJob", [JobState.RUNNING.value])
        before = sum(run.api.counts.values())
        t0 = time.perf_counter()
        c.run_once(time.time())
        return {"mode": "watch" if watch else "poll", "running": ran, "requests": sum(run.api.counts.values()) - before,
                "pass_ms": round(1000 * (time.perf_counter() - t0), 1)}
    finally:
        run.backend.stop_watching()
        run.close()


def show(r: dict, qps: float, burst: int) -> None:
    print(f"== {r['mode']}: {r['jobs']:,} jobs; {r['finished']:,} finished, {r['succeeded']:,} succeeded, "
          f"{r['attempts']:,} attempts, {r['launched_twice']} launched twice")
    print(f"  wall {r['wall_s']} s, {r['jobs_per_s']} jobs/s through the controller ({r['passes']} passes, "
          f"at most {r['peak_clusters']} RayClusters placed at once)")
    print(f"  API requests: {r['requests']:,}, {r['requests_per_attempt']} per attempt (target <= {CALLS_PER_ATTEMPT_MAX}); by verb {r['by_verb']}")
    for k, v in list(r["per_attempt"].items())[:10]:
        print(f"    {k:36s} {v:>8} per attempt")
    print(f"  peak {r['peak_1s']} requests in 1 s (budget {burst + qps:.0f}: burst {burst} + {qps:.0f} QPS), {r['peak_10s']} in 10 s "
          f"(budget {burst + 10 * qps:.0f}); mean {r['mean_qps']} QPS; client waited {r['client_waits']} times, {r['client_wait_s']} s")
    if r["watches"]:
        print(f"  watches: {r['watches']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1000, help="jobs through the watched backend (default 1000)")
    ap.add_argument("--baseline-jobs", type=int, default=100, help="jobs through the polling baseline (default 100; 0: none)")
    ap.add_argument("--interval", type=float, default=0.2, help="the controller's idle tick in seconds (default 0.2)")
    ap.add_argument("--timeout", type=float, default=240.0, help="give a run up after this many seconds (default 240)")
    ap.add_argument("--qps", type=float, default=300.0, help="the client's budget (default 300, Kueue's)")
    ap.add_argument("--burst", type=int, default=500, help="the client's burst (default 500, Kueue's)")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.baseline_jobs < 0:
        ap.error("--jobs must be at least 1 and --baseline-jobs at least 0")
    logging.basicConfig(level=logging.ERROR)
    result: dict = {"benchmark": "kuberay_scale", "python": sys.version.split()[0], "qps": args.qps, "burst": args.burst}
    costs = [pass_cost(PASS_RUNNING, watch=w) for w in (False, True)]
    for pc in costs:
        print(f"== one controller pass with {pc['running']} jobs RUNNING, {pc['mode']}: {pc['requests']} API requests, {pc['pass_ms']} ms")
    result["pass_cost"] = costs
    if args.baseline_jobs:
        base = run_once(args.baseline_jobs, watch=False, interval=args.interval, timeout=args.timeout, qps=args.qps, burst=args.burst)
        show(base, args.qps, args.burst)
        result["baseline_poll"] = base
    r = run_once(args.jobs, watch=True, interval=args.interval, timeout=args.timeout, qps=args.qps, burst=args.burst)
    show(r, args.qps, args.burst)
    result["watch"] = r
    within = r["peak_1s"] <= args.burst + args.qps and r["peak_10s"] <= args.burst + 10 * args.qps
    targets = {
        "pass_requests_watched": costs[1]["requests"], "pass_requests_watched_max": 0,
        "all_complete": r["succeeded"] == args.jobs, "none_launched_twice": r["launched_twice"] == 0,
        "qps_within_budget": within,
        "requests_per_attempt_max": CALLS_PER_ATTEMPT_MAX, "requests_per_attempt": r["requests_per_attempt"],
        "requests_per_attempt_met": r["requests_per_attempt"] is not None and r["requests_per_attempt"] <= CALLS_PER_ATTEMPT_MAX,
        "judged": args.jobs >= 1000,
    }
    targets["met"] = bool(targets["judged"] and targets["all_complete"] and targets["none_launched_twice"] and within
                          and targets["requests_per_attempt_met"] and costs[1]["requests"] == 0)
    result["targets"] = targets
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
