"""A GKE-scale fleet trace (``rayfleet simulate trace``, ``docs/scale.md``): a platform config and a
fleet scenario for ``rayfleet simulate fleet``, generated from an accelerator count, a team count,
a length in days and a seed.

Pure: numbers in, documents out. Every random draw comes from one ``random.Random(seed)`` in a
fixed order and the documents are dumped with a fixed key order, so one seed gives byte-identical
files. The platform is :mod:`.trace_platform`; this module adds what happens on it:

- **Training** jobs per accelerator family, submitted until the family's accelerator-seconds reach
  :data:`OFFERED_LOAD` of what its pools hold over the trace (busier in working hours); gangs of 1
  to 64 hosts (powers of two, small ones most often; TPU v5e in whole 4-host slices), heavy-tailed
  runtimes (lognormal, median 2 h, from 5 minutes to 3 days), a checkpoint every 10 to 60 minutes,
  :data:`PRODUCTION_SHARE` of them production, a few with a bug that fails every attempt.
- **Inference** services of the inference teams on the L4 compute class, with a daily load curve
  (busy in the morning, quiet at night; :func:`load_curve`) whose peak is most of the L4
  reservation; at night the training teams' quota schedule takes the reservation over.
- **Capacity events** at the rates of :data:`RECLAIMS_PER_HOST_DAY` (spot reclaims),
  :data:`FAULTS_PER_HOST_DAY` (a faulty host failing its runs until repaired) and
  :data:`LOSSES_PER_HOST_DAY` (a host lost without notice); DWS and spot stockout windows; each
  pool's provisioning delay.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import yaml

from .trace_platform import (
    FAMILIES,
    GPUS_MIN,
    NIGHT_HOURS,
    NIGHT_INFERENCE_SHARE,
    SHAPES,
    Fleet,
    PoolShape,
    platform_documents,
    size_fleet,
)

#: libyaml's emitter where PyYAML has it (the pure-Python one takes most of a minute for 30,000 jobs).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
GPUS_MAX = 100_000
TEAMS_MIN, TEAMS_MAX = 2, 1000
DAYS_MAX = 30.0
DAY = 86400.0
#: Training demand per family, as a share of what its pools can run over the trace.
OFFERED_LOAD = 0.9
PRODUCTION_SHARE = 0.3
#: Jobs with a bug: every attempt fails a while after it starts (they end FAILED after maxRestarts).
BUGGY_SHARE = 0.02
RUNTIME_MEDIAN_S, RUNTIME_SIGMA, RUNTIME_MIN_S, RUNTIME_MAX_S = 7200.0, 1.2, 300.0, 3 * DAY
GANG_HOSTS = (1, 2, 4, 8, 16, 32, 64)
#: Gang sizes: weight of a gang of h hosts is h ** -GANG_EXPONENT.
GANG_EXPONENT = 1.2
CHECKPOINT_EVERY_S = (600, 900, 1800, 3600)
RECLAIMS_PER_HOST_DAY = {"l4-spot": 0.25, "tpu-v6e": 0.25}
#: GPU/TPU host faults (XID errors, chip faults): about one per 8-GPU host per 100 days.
FAULTS_PER_HOST_DAY = {"a100-res": 0.01, "h100-dws": 0.01, "tpu-v5e": 0.005, "tpu-v6e": 0.005}
FAULTS_DEFAULT_PER_HOST_DAY = 0.003
LOSSES_PER_HOST_DAY = 0.002
#: (delay, jitter) seconds a host takes to come up, per pool (reservations are up from the start).
PROVISIONING = {"t4": (90, 60), "l4-dws": (300, 900), "l4-spot": (60, 60), "h100-dws": (900, 1800),
                "tpu-v5e": (300, 300), "tpu-v6e": (120, 120)}
#: (chance per day, shortest, longest seconds) of a stockout window.
STOCKOUTS = {"h100-dws": (0.5, 2 * 3600, 8 * 3600), "l4-dws": (0.3, 3600, 4 * 3600), "l4-spot": (0.3, 3600, 3 * 3600)}
#: Share of the L4 reservation's hosts the services ask for at the morning peak.
SERVING_PEAK = 0.9
SERVING_FLOOR = 0.2


@dataclass(frozen=True)
class Trace:
    config: list[dict[str, Any]]
    scenario: dict[str, Any]
    summary: dict[str, Any]


def problems(gpus: int, teams: int, days: float) -> list[str]:
    """What is wrong with the arguments, each naming its option."""
    out = []
    if not GPUS_MIN <= gpus <= GPUS_MAX:
        out.append(f"--gpus: {gpus} is out of range {GPUS_MIN}..{GPUS_MAX} (one host or slice of every pool needs {GPUS_MIN})")
    if not TEAMS_MIN <= teams <= TEAMS_MAX:
        out.append(f"--teams: {teams} is out of range {TEAMS_MIN}..{TEAMS_MAX}")
    if not (math.isfinite(days) and 0 < days <= DAYS_MAX):
        out.append(f"--days: {days} must be more than 0 and at most {DAYS_MAX:g}")
    return out


def load_curve(hour: float) -> float:
    """Share of peak load at an hour of the day (UTC): quiet at night, a morning peak at 10:00, a
    smaller one after lunch."""
    morning = math.exp(-(((hour - 10.0) / 2.5) ** 2))
    afternoon = 0.6 * math.exp(-(((hour - 15.0) / 3.0) ** 2))
    return min(1.0, SERVING_FLOOR + (1 - SERVING_FLOOR) * max(morning, afternoon))


def _busy(t: float) -> float:
    """Relative submission rate at time t: working hours (08-20 UTC, weekdays) twice the rest."""
    day, hour = int(t // DAY) % 7, (t % DAY) / 3600
    return 1.0 if day < 5 and 8 <= hour < 20 else 0.5


def _submit_time(rng: random.Random, horizon: float) -> float:
    while True:
        t = rng.uniform(0, horizon)
        if rng.random() < _busy(t):
            return t


def _gang_hosts(rng: random.Random, pools: list[PoolShape], fleet: Fleet) -> int:
    cap = min(fleet.replicas[s.name] * s.slice_hosts for s in pools)
    step = max(s.slice_hosts for s in pools)
    sizes = [h for h in GANG_HOSTS if h <= min(64, cap) and h % step == 0] or [step]
    return rng.choices(sizes, weights=[h ** -GANG_EXPONENT for h in sizes])[0]


def _runtime(rng: random.Random) -> float:
    return float(min(RUNTIME_MAX_S, max(RUNTIME_MIN_S, round(rng.lognormvariate(math.log(RUNTIME_MEDIAN_S), RUNTIME_SIGMA)))))


def _family_capacity(fleet: Fleet, family: str) -> float:
    """Accelerators training can count on in a family, on average: the L4 reservation only for its
    night share (the quota schedule)."""
    night = NIGHT_HOURS / 24 * (1 - NIGHT_INFERENCE_SHARE)
    return sum(fleet.accelerators(s) * (night if s.name == "l4-res" else 1.0) for s in SHAPES if s.family == family)


def _jobs(rng: random.Random, fleet: Fleet, horizon: float) -> list[dict[str, Any]]:
    training = [t for t in fleet.teams if not t.inference]
    weights = [t.weight for t in training]
    drawn: list[tuple[float, dict[str, Any]]] = []
    counters: dict[tuple[str, str], int] = {}
    for family in FAMILIES:
        pools = [s for s in SHAPES if s.family == family and s.name != "l4-res"] or [s for s in SHAPES if s.family == family]
        s = pools[0]
        budget = OFFERED_LOAD * _family_capacity(fleet, family) * horizon
        used, count = 0.0, 0
        while used < budget or count == 0:
            count += 1
            team = rng.choices(training, weights=weights)[0]
            hosts = _gang_hosts(rng, pools, fleet)
            runtime = _runtime(rng)
            used += hosts * s.per_host * runtime
            at = round(_submit_time(rng, horizon), 1)
            n = counters[(team.name, family)] = counters.get((team.name, family), 0) + 1
            job: dict[str, Any] = {
                "name": f"{team.name}-{family}-{n}", "at": at, "queue": team.queue,
                "priorityClass": "production" if rng.random() < PRODUCTION_SHARE else "experiment",
                "gang": {"workers": hosts, "accelerator": s.accelerator,
                         "resourcesPerWorker": {"cpu": s.cpu * 3 // 4, "memory": f"{s.memory_gib * 3 // 4}Gi", s.resource: s.per_host}},
                "failurePolicy": {"maxRestarts": 3, "disruptionBackoff": 30},
                "runtime": runtime, "startup": rng.randint(30, 180), "checkpointEvery": rng.choice(CHECKPOINT_EVERY_S)}
            if rng.random() < BUGGY_SHARE:
                job |= {"failAt": rng.randint(60, 1800), "failMessage": "RuntimeError: CUDA error: an illegal memory access was encountered"}
            drawn.append((at, job))
    drawn.sort(key=lambda x: (x[0], x[1]["name"]))
    return [j for _, j in drawn]


def _services(rng: random.Random, fleet: Fleet, horizon: float) -> list[dict[str, Any]]:
    res = next(s for s in SHAPES if s.name == "l4-res")
    serving = [t for t in fleet.teams if t.inference]
    peak_total = max(len(serving), round(fleet.replicas[res.name] * SERVING_PEAK))
    out = []
    for team, peak_team in zip(serving, _split_min1(peak_total, [t.weight for t in serving]), strict=True):
        n = min(peak_team, rng.randint(1, 3))
        for k, peak in enumerate(_split_min1(peak_team, [rng.uniform(0.5, 1.5) for _ in range(n)]), start=1):
            floor = max(1, math.ceil(peak * SERVING_FLOOR))
            load, last = [], None
            for h in range(int(math.ceil(horizon / 3600))):
                want = max(floor, min(peak, round(peak * load_curve(h % 24))))
                if want != last:
                    load.append({"at": h * 3600, "replicas": want})
                    last = want
            out.append({"name": f"{team.name}-svc-{k}", "readyAfter": rng.randint(60, 240), "load": load, "at": 0,
                        "spec": {"importPath": "serve_apps.pipeline_mlp:app", "queue": team.queue, "priorityClass": "production",
                                 "replicaGroup": {"hostsPerReplica": 1, "accelerator": res.accelerator,
                                                  "resourcesPerHost": {"cpu": res.cpu * 3 // 4, "memory": f"{res.memory_gib * 3 // 4}Gi",
                                                                       res.resource: res.per_host}},
                                 "autoscaling": {"minReplicas": floor, "maxReplicas": peak}}})
    return out


def _split_min1(total: int, weights: list[float]) -> list[int]:
    """``total`` split by weight, at least 1 each (``total`` >= len(weights))."""
    out = [1] * len(weights)
    rest = total - len(weights)
    w = sum(weights)
    raw = [rest * x / w for x in weights]
    extra = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (-(raw[i] - extra[i]), i))[: rest - sum(extra)]:
        extra[i] += 1
    return [a + b for a, b in zip(out, extra, strict=True)]


def host_names(s: PoolShape, replicas: int) -> list[str]:
    """The sim's host slots of a pool (``api/labels.py``: ``t4-0``, ``tpu-v5e-0-1``)."""
    if s.accelerator.startswith("tpu-"):
        return [f"{s.name}-{i}-{h}" for i in range(replicas) for h in range(s.slice_hosts)]
    return [f"{s.name}-{i}" for i in range(replicas)]


def _poisson_times(rng: random.Random, rate: float, horizon: float) -> list[float]:
    out: list[float] = []
    t = 0.0
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= horizon:
            return out
        out.append(round(t, 1))
    return out


def _capacity_events(rng: random.Random, fleet: Fleet, horizon: float) -> dict[str, Any]:
    pools: dict[str, Any] = {}
    hosts_ev: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    for s in SHAPES:
        names = host_names(s, fleet.replicas[s.name])
        script: dict[str, Any] = {}
        if s.name in PROVISIONING:
            script["provisioningDelay"], script["provisioningJitter"] = PROVISIONING[s.name]
        if s.name in STOCKOUTS:
            chance, shortest, longest = STOCKOUTS[s.name]
            windows = []
            for d in range(int(math.ceil(horizon / DAY))):
                if rng.random() < chance:
                    start = d * DAY + rng.uniform(0, DAY)
                    if start < horizon:
                        windows.append({"from": round(start), "until": round(start + rng.uniform(shortest, longest))})
            if windows:
                script["stockouts"] = windows
        if script:
            pools[s.name] = script
        for t in _poisson_times(rng, RECLAIMS_PER_HOST_DAY.get(s.name, 0.0) * len(names) / DAY, horizon):
            hosts_ev.append({"reclaim": rng.choice(names), "at": t})
        for t in _poisson_times(rng, LOSSES_PER_HOST_DAY * len(names) / DAY, horizon):
            hosts_ev.append({"lose": rng.choice(names), "at": t})
        rate = FAULTS_PER_HOST_DAY.get(s.name, FAULTS_DEFAULT_PER_HOST_DAY)
        for t in _poisson_times(rng, rate * len(names) / DAY, horizon):
            host = rng.choice(names)
            what = "TPU chip error" if s.resource == "google.com/tpu" else "XID 79: GPU has fallen off the bus"
            faults.append({"host": host, "from": t, "until": round(t + rng.uniform(1800, 3 * 3600), 1), "message": f"{what} on {host}"})
    hosts_ev.sort(key=lambda e: (e["at"], e.get("reclaim") or e.get("lose")))
    faults.sort(key=lambda e: (e["from"], e["host"]))
    return {"pools": pools, "hosts": hosts_ev, "faults": faults}


def generate(gpus: int, teams: int, days: float, seed: int) -> Trace:
    """The trace's config documents, scenario and a summary. Arguments must pass :func:`problems`."""
    bad = problems(gpus, teams, days)
    if bad:
        raise ValueError("; ".join(bad))
    rng = random.Random(seed)
    horizon = round(days * DAY, 1)
    fleet = size_fleet(gpus, teams, rng)
    config = platform_documents(fleet, seed=seed)
    events = _capacity_events(rng, fleet, horizon)
    services = _services(rng, fleet, horizon)
    jobs = _jobs(rng, fleet, horizon)
    sample = 300 if horizon <= DAY else 900 if horizon <= 7 * DAY else 3600
    scenario: dict[str, Any] = {"kind": "FleetScenario", "seed": seed, "start": "2026-01-05T00:00:00Z", "until": horizon,
                                "sampleEvery": sample, **events, "services": services, "jobs": jobs}
    accel = {f: sum(fleet.accelerators(s) for s in SHAPES if s.family == f) for f in FAMILIES}
    summary = {"accelerators": sum(accel.values()), "byFamily": accel, "hosts": sum(fleet.replicas[s.name] * s.slice_hosts for s in SHAPES),
               "teams": teams, "inferenceTeams": sum(t.inference for t in fleet.teams),
               "cohorts": len({t.cohort for t in fleet.teams}), "jobs": len(jobs), "services": len(services),
               "reclaims": sum("reclaim" in e for e in events["hosts"]), "losses": sum("lose" in e for e in events["hosts"]),
               "faults": len(events["faults"]), "seconds": horizon}
    return Trace(config, scenario, summary)


def render(trace: Trace) -> tuple[str, str]:
    """The config (multi-document YAML) and the scenario as text, in a fixed key order, so
    byte-identical per seed. The scenario is JSON (which is YAML: ``load_fleet_scenario`` reads it
    either way), one job, service or event a line: a week of 10,000 GPUs is some 30,000 jobs, which
    PyYAML takes minutes to write and read, JSON well under a second."""
    def dump(doc: Any) -> str:
        return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, default_flow_style=None, width=160)
    config = "# Generated by `rayfleet simulate trace` (docs/scale.md).\n" + "---\n".join(dump(d) for d in trace.config)
    lines = []
    for key, value in trace.scenario.items():
        if isinstance(value, list) and value:
            items = ",\n  ".join(json.dumps(v, sort_keys=False, separators=(", ", ": ")) for v in value)
            lines.append(f"{json.dumps(key)}: [\n  {items}]")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, separators=(', ', ': '))}")
    return config, "{\n" + ",\n".join(lines) + "\n}\n"


__all__ = ["Trace", "generate", "host_names", "load_curve", "problems", "render"]
