"""Gang placement on a pool: Ray bundles, bundle label selectors, strategy and static feasibility.

Pure (no Ray import): the local backend, the Train launcher and the entry-point wrapper all build
their placement groups from a :class:`GangPlan`, so a gang asks for the same thing whichever way it
runs. A gang is *one* placement group: one bundle per worker, every bundle pinned to the admitted
pool by the ``rayfleet.io/pool`` node label (and, for a multi-host TPU job, to one slice by
``rayfleet.io/tpu-slice``), so either all workers get a host of that pool or none starts.

Resource mapping (canonical api units -> Ray resources of one bundle):

- ``nvidia.com/gpu: n`` -> ``GPU: n`` (Ray Train requests it with ``use_gpu=True``).
- ``google.com/tpu: n`` -> ``TPU: n`` in entry-point gangs. Ray Train rejects ``TPU`` without
  ``use_tpu=True``, and ``use_tpu=True`` forbids label selectors (it reserves a slice by its own
  head resource, blind to pools), so Train gangs on TPU pools reserve hosts through
  ``accelerator_type:<type>`` alone (see below) and keep pool pinning.
- ``accelerator_type:<type>``: every accelerator host carries exactly 1 of it, and each bundle
  asks for ``accelerators per worker / accelerators per host`` of it. This is the host-level
  reservation both kinds of gangs share: a host whose chips a Train gang holds is full for an
  entry-point gang too, and a host with any fraction taken is not free.
- ``cpu``: a simulated host advertises few Ray CPUs (``cpus_per_host``); a worker asks for the
  same share of them as its CPU request is of the pool's real ``cpuPerHost``.
- ``memory`` is not mapped (simulated hosts share this machine's memory).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..api import CPU, GPU, MEMORY, TPU, PlacementStrategy, PoolSpec, format_quantity
from ..api.labels import LABEL_POOL, LABEL_TPU_SLICE

if TYPE_CHECKING:
    from .base import LaunchRequest

# Ray stores resource amounts as fixed point with 4 decimals.
_RES_QUANTUM = 1e-4


def _q(value: float) -> float:
    """Round to Ray's resource precision, never below one quantum for a positive amount."""
    if value <= 0:
        return 0.0
    return max(_RES_QUANTUM, round(value, 4))


def default_strategy(spec: PoolSpec, explicit: PlacementStrategy | str | None) -> PlacementStrategy:
    """The gang's strategy: the one asked for, else STRICT_SPREAD for multi-host TPU, else PACK."""
    if explicit is not None:
        return PlacementStrategy(explicit)
    if spec.is_tpu and spec.slice_hosts > 1:
        return PlacementStrategy.STRICT_SPREAD
    return PlacementStrategy.PACK


def worker_resources(resources_per_worker: dict[str, int], spec: PoolSpec, *, host_cpus: float, for_train: bool = False) -> dict[str, float]:
    """Ray resources of one worker's bundle (see the module docstring for the mapping)."""
    out: dict[str, float] = {}
    cpu_m = resources_per_worker.get(CPU, 0)
    if cpu_m:
        share = min(1.0, cpu_m / spec.cpu_per_host) if spec.cpu_per_host else 1.0
        out["CPU"] = _q(host_cpus * share)
    accel = 0
    if resources_per_worker.get(GPU):
        accel = resources_per_worker[GPU]
        out["GPU"] = float(accel)
    if resources_per_worker.get(TPU):
        accel = resources_per_worker[TPU]
        if not for_train:
            out["TPU"] = float(accel)
    if spec.accelerator is not None and accel:
        share = min(1.0, accel / spec.accelerators_per_host)
        out[f"accelerator_type:{spec.accelerator.ray_type}"] = _q(share)
    if not out:
        out["CPU"] = _q(0.01 * host_cpus)
    return out


@dataclass(frozen=True)
class GangPlan:
    """How one gang is placed: the same plan drives Train gangs and entry-point gangs."""

    run_id: str
    pool: str
    workers: int
    strategy: str
    bundle: dict[str, float]                 # one worker's bundle (entry-point gangs)
    train_resources: dict[str, float]        # Ray Train resources_per_worker (no TPU key)
    use_gpu: bool
    label_selectors: list[dict[str, str]]    # one per worker / bundle
    tpu_slice: str | None = None
    accelerator_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def bundles(self) -> list[dict[str, float]]:
        return [dict(self.bundle) for _ in range(self.workers)]

    def describe(self) -> str:
        where = f"pool {self.pool!r}" + (f", slice {self.tpu_slice!r}" if self.tpu_slice else "")
        return f"{self.workers} x {json.dumps(self.bundle, sort_keys=True)} ({self.strategy}) on {where}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GangPlan:
        return cls(**data)


def plan_gang(
    *,
    run_id: str,
    pool: str,
    spec: PoolSpec,
    workers: int,
    resources_per_worker: dict[str, int],
    strategy: PlacementStrategy | str | None,
    host_cpus: float,
    tpu_slice: str | None = None,
) -> GangPlan:
    """The placement of a gang on ``pool``; ``tpu_slice`` pins a multi-host TPU gang to one slice."""
    strat = default_strategy(spec, strategy)
    selector = {LABEL_POOL: pool}
    if tpu_slice is not None:
        selector[LABEL_TPU_SLICE] = tpu_slice
    return GangPlan(
        run_id=run_id,
        pool=pool,
        workers=workers,
        strategy=strat.value,
        bundle=worker_resources(resources_per_worker, spec, host_cpus=host_cpus),
        train_resources=worker_resources(resources_per_worker, spec, host_cpus=host_cpus, for_train=True),
        use_gpu=bool(resources_per_worker.get(GPU)),
        label_selectors=[dict(selector) for _ in range(workers)],
        tpu_slice=tpu_slice,
        accelerator_type=spec.accelerator.ray_type if spec.accelerator is not None else None,
    )


def plan_request(req: LaunchRequest, *, spec: PoolSpec, host_cpus: float, tpu_slice: str | None = None) -> GangPlan:
    """:func:`plan_gang` for an attempt's launch request (both backends plan gangs this way)."""
    return plan_gang(
        run_id=req.run_id,
        pool=req.pool,
        spec=spec,
        workers=req.workers,
        resources_per_worker=dict(req.resources_per_worker),
        strategy=req.placement_strategy,
        host_cpus=host_cpus,
        tpu_slice=tpu_slice,
    )


# ---------------------------------------------------------------- gang fit: the one rule

#: Share of a host's allocatable CPU and memory a KubeRay worker pod requests: the rest is left to
#: GKE's DaemonSets (GPU device plugin, logging, metrics agents) so that one worker pod fits each host.
POD_HOST_FRACTION = 0.9


def host_offer(spec: PoolSpec, backend: str = "local") -> dict[str, int]:
    """What one worker may use of a host of the pool, canonical units: the whole host on the local
    backend; on KubeRay a worker pod gets every accelerator and :data:`POD_HOST_FRACTION` of CPU and
    memory."""
    offer = dict(spec.host_resources())
    if backend == "kuberay":
        offer[CPU] = int(spec.cpu_per_host * POD_HOST_FRACTION)
        offer[MEMORY] = int(spec.memory_per_host * POD_HOST_FRACTION)
    return offer


@dataclass(frozen=True)
class GangFit:
    """How a gang fits a pool. ``problems``: (gang field, why) for each reason it never can, whatever
    is free: ``resourcesPerWorker`` (a worker is larger than a host), ``placementStrategy``
    (STRICT_PACK beyond one host, STRICT_SPREAD beyond the hosts there are), ``workers`` (more
    hosts than the pool has, or than one slice has for a multi-host TPU gang)."""

    per_host: int                  # workers one host holds
    hosts: int                     # hosts the gang takes (whole slices on a multi-host TPU pool)
    slices: int                    # worker-group replicas: TPU slices, else hosts
    strategy: str
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def gang_fit(spec: PoolSpec, workers: int, resources_per_worker: dict[str, int], strategy: PlacementStrategy | str | None = None,
             *, pool: str = "", backend: str = "local") -> GangFit:
    """The one gang-fit rule: used by admission (at submit, with the platform's backend), the local
    backend (at launch) and the KubeRay manifests (worker-group size). ``backend`` says what a
    worker gets of a host (:func:`host_offer`) and how many TPU slices a gang may span: one on the
    local backend, as many as the pool has on KubeRay. Any other gang may use every host of the pool."""
    offer = host_offer(spec, backend)
    strat = default_strategy(spec, strategy)
    name = f"pool {pool!r}" if pool else "the pool"
    too_big = [
        ("resourcesPerWorker", f"a worker asks for {format_quantity(res, amount)} {res} but a host of {name} offers {format_quantity(res, offer.get(res, 0))}")
        for res, amount in resources_per_worker.items() if amount and offer.get(res, 0) < amount
    ]
    if too_big:
        return GangFit(0, 0, 0, strat.value, tuple(too_big))
    fits = [offer[res] // amount for res, amount in resources_per_worker.items() if amount]
    per_host = min(fits) if fits else max(workers, 1)
    # A multi-host TPU gang takes whole slices. The local backend pins it to one slice (its plan's
    # rayfleet.io/tpu-slice selector); a KubeRay run's own RayCluster holds as many slices as it needs.
    multi_host_tpu = spec.is_tpu and spec.slice_hosts > 1
    one_slice = multi_host_tpu and backend == "local"
    limit = spec.slice_hosts if one_slice else spec.max_hosts
    if one_slice:
        scope = f"one slice of {name} ({limit} hosts)"
    elif multi_host_tpu:
        scope = f"{name} ({spec.max_replicas} slices of {spec.slice_hosts} hosts: {limit} hosts)"
    else:
        scope = f"{name} ({limit} hosts)"
    problems: list[tuple[str, str]] = []
    # A strategy the gang asked for is the field to blame; a defaulted one (multi-host TPU) is not.
    strategy_field = "placementStrategy" if strategy is not None else "workers"
    if strat == PlacementStrategy.STRICT_SPREAD:
        hosts = workers
        if workers > limit:
            problems.append((strategy_field, f"STRICT_SPREAD puts each of the {workers} workers on its own host, but {scope} has {limit}"))
    elif strat == PlacementStrategy.STRICT_PACK:
        hosts = 1
        if workers > per_host:
            problems.append((strategy_field, f"STRICT_PACK puts all {workers} workers on one host, but a host of {name} holds {per_host}"))
    else:
        hosts = math.ceil(workers / per_host)
        if hosts > limit:
            problems.append(("workers", f"{workers} workers need {hosts} hosts at {per_host} per host, but {scope} has {limit}"))
    slices = math.ceil(hosts / spec.slice_hosts)
    return GangFit(per_host, slices * spec.slice_hosts, slices, strat.value, tuple(problems))


def feasibility_problems(pool: str, spec: PoolSpec, workers: int, resources_per_worker: dict[str, int], strategy: PlacementStrategy | str | None) -> list[str]:
    """Why a gang can never be placed on the pool as configured (empty: it can, given free hosts).
    Static: hosts that are busy or dead now make a gang wait, not fail here."""
    return [why for _, why in gang_fit(spec, workers, resources_per_worker, strategy, pool=pool).problems]
