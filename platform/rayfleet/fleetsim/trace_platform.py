"""The platform a generated fleet trace runs on (``rayfleet simulate trace``, ``docs/scale.md``):
pools, flavors, a compute class, cohorts, queues, teams and priority classes shaped like the
talk's GKE platform, sized from an accelerator count and a team count.

Pure: numbers in, config documents (dicts, the ``cluster_configs`` YAML shape) out; the team
weights come from the caller's ``random.Random``.

- T4 on demand; L4 from a reservation, with DWS flex-start and spot behind it (the compute class
  ``l4``: reservation -> flex-start -> spot); A100 from a reservation; H100 through DWS flex-start
  (queued: the whole gang at once); TPU v5e 4x4 slices (4 hosts x 4 chips) on demand and TPU v6e
  2x4 single-host slices on spot.
- One queue per team; teams in cohorts of up to :data:`TEAMS_PER_COHORT` under one root cohort, so
  idle quota is lent across the whole fleet and reclaimed by its owner. Every fifth team serves
  (inference teams own the L4 reservation by day); the others train. Nominal quotas split each
  flavor's whole hosts between the teams by weight; at night (:data:`NIGHT`) most of the L4
  reservation's quota moves from the inference teams to the training teams (a quota schedule).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

GIB = 2**30
#: Teams per cohort (the org level under the root cohort ``fleet``).
TEAMS_PER_COHORT = 10
#: Every INFERENCE_EVERY-th team is an inference team (at least one).
INFERENCE_EVERY = 5
#: The night window of the quota schedule (UTC): the L4 reservation goes to training.
NIGHT = ("22:00", "06:00")
NIGHT_HOURS = 8
#: Share of the L4 reservation's quota the inference teams keep at night.
NIGHT_INFERENCE_SHARE = 0.25
COMPUTE_CLASS = "l4"
ROOT_COHORT = "fleet"


@dataclass(frozen=True)
class PoolShape:
    """One pool of the fleet: its share of the accelerators and the machine it is made of."""

    name: str
    family: str            # t4, l4, a100, h100, tpu-v5e, tpu-v6e
    accelerator: str       # GKE accelerator name
    share: float           # of all accelerators (GPUs and TPU chips)
    per_host: int          # accelerators per host
    machine: str
    cpu: int               # cores per host
    memory_gib: int
    mode: dict[str, Any]   # spec.provisioning
    price: float           # USD per host-hour
    topology: str | None = None
    slice_hosts: int = 1   # hosts per TPU slice

    @property
    def resource(self) -> str:
        return "google.com/tpu" if self.accelerator.startswith("tpu-") else "nvidia.com/gpu"

    @property
    def unit(self) -> int:
        """Accelerators in one replica (a host, or a multi-host slice)."""
        return self.per_host * self.slice_hosts


SHAPES: tuple[PoolShape, ...] = (
    PoolShape("t4", "t4", "nvidia-tesla-t4", 0.10, 1, "n1-standard-8", 8, 30, {"mode": "on-demand"}, 0.73),
    PoolShape("l4-res", "l4", "nvidia-l4", 0.15, 4, "g2-standard-48", 48, 192,
              {"mode": "reservation", "reservationName": "l4-shared"}, 2.40),
    PoolShape("l4-dws", "l4", "nvidia-l4", 0.08, 4, "g2-standard-48", 48, 192, {"mode": "dws-flex", "queued": True}, 2.10),
    PoolShape("l4-spot", "l4", "nvidia-l4", 0.07, 4, "g2-standard-48", 48, 192, {"mode": "spot", "reclaimNotice": 30}, 1.05),
    PoolShape("a100-res", "a100", "nvidia-tesla-a100", 0.20, 8, "a2-highgpu-8g", 96, 680,
              {"mode": "reservation", "reservationName": "a100-training"}, 29.39),
    PoolShape("h100-dws", "h100", "nvidia-h100-80gb", 0.20, 8, "a3-highgpu-8g", 208, 1872,
              {"mode": "dws-flex", "queued": True}, 61.00),
    PoolShape("tpu-v5e", "tpu-v5e", "tpu-v5-lite-podslice", 0.10, 4, "ct5lp-hightpu-4t", 112, 192,
              {"mode": "on-demand"}, 4.80, topology="4x4", slice_hosts=4),
    PoolShape("tpu-v6e", "tpu-v6e", "tpu-v6e-slice", 0.10, 8, "ct6e-standard-8t", 180, 720,
              {"mode": "spot", "reclaimNotice": 30}, 8.64, topology="2x4"),
)
FAMILIES = tuple(dict.fromkeys(s.family for s in SHAPES))
#: The fewest accelerators a trace may ask for: one replica of every pool.
GPUS_MIN = sum(s.unit for s in SHAPES)


@dataclass(frozen=True)
class TeamShape:
    name: str
    queue: str
    cohort: str
    inference: bool
    weight: float


@dataclass(frozen=True)
class Fleet:
    """The sized platform: replicas (hosts, or slices) per pool, the teams, and their quotas."""

    replicas: dict[str, int]
    teams: tuple[TeamShape, ...]
    quotas: dict[str, dict[str, int]]        # queue -> pool -> nominal replicas (by day)
    night: dict[str, int]                    # queue -> nominal replicas of l4-res at night

    def accelerators(self, shape: PoolShape) -> int:
        return self.replicas[shape.name] * shape.unit


def shape(name: str) -> PoolShape:
    return next(s for s in SHAPES if s.name == name)


def _split(total: int, weights: list[float]) -> list[int]:
    """``total`` whole units split by weight (largest remainders; ties to the earlier)."""
    if not weights or total <= 0:
        return [0] * len(weights)
    w = sum(weights)
    raw = [total * x / w for x in weights]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))[: total - sum(out)]:
        out[i] += 1
    return out


def size_fleet(gpus: int, teams: int, rng: random.Random) -> Fleet:
    replicas = {s.name: max(1, round(gpus * s.share / s.unit)) for s in SHAPES}
    width = len(str(teams))
    shapes = []
    for i in range(teams):
        name = f"team-{i + 1:0{width}d}"
        inference = (i + 1) % INFERENCE_EVERY == 0 or (teams < INFERENCE_EVERY and i == teams - 1)
        cohort = f"org-{i // TEAMS_PER_COHORT + 1:0{len(str((teams - 1) // TEAMS_PER_COHORT + 1))}d}"
        # team sizes are heavy-tailed: a few big teams, many small ones
        shapes.append(TeamShape(name, name, cohort, inference, round(rng.lognormvariate(0.0, 0.8), 3)))
    training = [t for t in shapes if not t.inference]
    serving = [t for t in shapes if t.inference]
    quotas: dict[str, dict[str, int]] = {t.queue: {} for t in shapes}
    for s in SHAPES:
        owners = serving if s.name == "l4-res" else training
        for t, n in zip(owners, _split(replicas[s.name], [t.weight for t in owners]), strict=True):
            quotas[t.queue][s.name] = n
    night = {}
    kept = _split(round(replicas["l4-res"] * NIGHT_INFERENCE_SHARE), [t.weight for t in serving])
    for t, n in zip(serving, kept, strict=True):
        night[t.queue] = n
    for t, n in zip(training, _split(replicas["l4-res"] - sum(kept), [t.weight for t in training]), strict=True):
        night[t.queue] = n
    return Fleet(replicas, tuple(shapes), quotas, night)


def _pool_doc(s: PoolShape, replicas: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"accelerator": s.accelerator, "acceleratorsPerHost": s.per_host, "machineType": s.machine}
    if s.topology:
        spec["tpuTopology"] = s.topology
    spec |= {"cpuPerHost": s.cpu, "memoryPerHost": f"{s.memory_gib}Gi", "minReplicas": 0, "maxReplicas": replicas,
             "provisioning": dict(s.mode), "pricePerHostHour": s.price}
    return {"kind": "Pool", "metadata": {"name": s.name}, "spec": spec}


def _amounts(s: PoolShape, replicas: int) -> dict[str, int]:
    hosts = replicas * s.slice_hosts
    return {"cpu": hosts * s.cpu, "memory": hosts * s.memory_gib, s.resource: hosts * s.per_host}


def _resources(s: PoolShape, replicas: int) -> list[dict[str, Any]]:
    a = _amounts(s, replicas)
    return [{"name": res, "nominalQuota": f"{a.get(res, 0)}Gi" if res == "memory" else a.get(res, 0)}
            for res in ("cpu", "memory", "nvidia.com/gpu", "google.com/tpu")]


def _queue_doc(fleet: Fleet, t: TeamShape) -> dict[str, Any]:
    pools = [s for s in SHAPES if s.family == "l4"] if t.inference else list(SHAPES)
    flavors = [{"name": s.name, "resources": _resources(s, fleet.quotas[t.queue].get(s.name, 0))} for s in pools]
    res = shape("l4-res")
    a = _amounts(res, fleet.night[t.queue])
    night = {"name": "night", "start": NIGHT[0], "end": NIGHT[1], "timezone": "UTC",
             "quotas": [{"flavor": res.name, "resource": k, "nominalQuota": f"{v}Gi" if k == "memory" else v} for k, v in a.items()]}
    return {"kind": "Queue", "metadata": {"name": t.queue}, "spec": {
        "team": t.name, "cohort": t.cohort, "computeClass": COMPUTE_CLASS, "queueingStrategy": "BestEffortFIFO",
        "preemption": {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any",
                       "borrowWithinCohort": {"policy": "LowerPriority", "maxPriorityThreshold": 100}},
        "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu", "google.com/tpu"], "flavors": flavors}],
        "quotaSchedule": [night]}}


def platform_documents(fleet: Fleet, *, seed: int) -> list[dict[str, Any]]:
    """The config documents of the sized fleet, in ``cluster_configs`` order."""
    docs: list[dict[str, Any]] = [{"apiVersion": "rayfleet.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "fleet-trace"},
                                   "spec": {"backend": "sim", "sim": {"seed": seed, "defaultRuntime": "1h"},
                                            "hostHealth": {"failuresToCordon": 2, "window": "1h", "repairTime": "2h"}}}]
    docs += [_pool_doc(s, fleet.replicas[s.name]) for s in SHAPES]
    docs += [{"kind": "Flavor", "metadata": {"name": s.name}, "spec": {"pool": s.name}} for s in SHAPES]
    docs.append({"kind": "ComputeClass", "metadata": {"name": COMPUTE_CLASS}, "spec": {"flavors": [
        {"flavor": "l4-res", "waitForCapacity": "2m"},
        {"flavor": "l4-dws", "waitForCapacity": "30m", "resubmitAfter": "10m"},
        {"flavor": "l4-spot"}]}})
    docs.append({"kind": "Cohort", "metadata": {"name": ROOT_COHORT}})
    docs += [{"kind": "Cohort", "metadata": {"name": c}, "spec": {"parent": ROOT_COHORT}}
             for c in dict.fromkeys(t.cohort for t in fleet.teams)]
    docs.append({"kind": "PriorityClass", "metadata": {"name": "production"},
                 "spec": {"value": 1000, "description": "Production training and serving: reclaims lent quota, preempts experiments."}})
    docs.append({"kind": "PriorityClass", "metadata": {"name": "experiment"},
                 "spec": {"value": 100, "description": "Experiments: idle and borrowed capacity, first to be preempted.", "default": True}})
    docs += [{"kind": "Team", "metadata": {"name": t.name},
              "spec": {"displayName": f"{'Inference' if t.inference else 'Training'} {t.name}", "costCenter": f"cc-{t.name}"}}
             for t in fleet.teams]
    docs += [_queue_doc(fleet, t) for t in fleet.teams]
    return docs
