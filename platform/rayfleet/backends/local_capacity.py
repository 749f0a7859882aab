"""The local backend's capacity as GKE has it: which hosts exist, which to start, and when.

Pure (no processes, no clock of its own): what :mod:`rayfleet.backends.local_hosts` decides from
before it starts or stops a Ray node. The autoscaler rule itself (how many hosts to ask for, which
idle ones to give back) is :mod:`rayfleet.capacity.scaling`, shared with the sim; the mode
semantics are :mod:`rayfleet.capacity.provisioning`.

- **Hosts** (:func:`plan_hosts`): every host a pool can have (``maxReplicas`` hosts, or slices of a
  multi-host TPU pool), each with the labels and resources of its GKE node. Only some exist at a
  time: :func:`initial_hosts` at ``up()`` (``minReplicas``; a reservation: all; a scenario's
  ``initialHosts``), more when a gang needs them, fewer after ``idleTimeout``.
- **Scripted capacity** (``spec.local.scenario``, the sim's scenario format,
  :mod:`rayfleet.backends.sim.scenario`; times are seconds after the cluster came up): a pool's
  ``provisioningDelay`` is added to a new host's real start, a ``stockouts`` window holds requests
  until it ends (:func:`ready_at`), and ``hosts`` events lose a host at once or reclaim it with
  notice (:func:`due_events`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..api import PoolSpec
from ..api.labels import LABEL_HOST, LABEL_TPU_SLICE, node_labels, node_resources
from ..capacity.provisioning import host_expires_at, host_lifetime, recycle_at, starts_full, window_open
from ..capacity.scaling import whole_slices
from .placement import gang_fit
from .sim.scenario import HostEvent, Scenario


@dataclass(frozen=True)
class HostPlan:
    """One simulated host: the Ray node that stands for one GKE node."""

    name: str
    pool: str
    slice_index: int
    host_index: int
    labels: dict[str, str]
    resources: dict[str, float]
    num_gpus: int

    @property
    def tpu_slice(self) -> str | None:
        return self.labels.get(LABEL_TPU_SLICE)


def plan_hosts(pools: dict[str, PoolSpec]) -> list[HostPlan]:
    """Every host of every pool at its maximum size: hosts for GPU/CPU pools, slices for TPU pools."""
    out = []
    for pool, spec in pools.items():
        if spec.is_tpu:
            for s in range(spec.max_replicas):
                for h in range(spec.slice_hosts):
                    labels = node_labels(pool, spec, slice_index=s, host_index=h)
                    out.append(HostPlan(labels[LABEL_HOST], pool, s, h, labels, node_resources(spec, host_index=h), 0))
        else:
            for h in range(spec.max_hosts):
                labels = node_labels(pool, spec, host_index=h)
                gpus = spec.accelerators_per_host if spec.accelerator is not None else 0
                out.append(HostPlan(labels[LABEL_HOST], pool, 0, h, labels, node_resources(spec, host_index=h), gpus))
    return out


def initial_hosts(pools: dict[str, PoolSpec], plans: Iterable[HostPlan], scenario: Scenario | None, now: float) -> list[str]:
    """The hosts ``up()`` starts: a reservation (or an open calendar window) all of them; any other
    pool its ``minReplicas`` (slices for multi-host TPU pools), or the scenario's ``initialHosts``
    rounded up to whole slices."""
    by_pool: dict[str, list[HostPlan]] = {}
    for h in plans:
        by_pool.setdefault(h.pool, []).append(h)
    out = []
    for pool, hosts in by_pool.items():
        spec = pools[pool]
        script = scenario.pools.get(pool) if scenario else None
        if not window_open(spec, now):
            n = 0
        elif starts_full(spec):
            n = spec.max_hosts
        elif script is not None and script.initial_hosts is not None:
            n = whole_slices(spec, script.initial_hosts)
        else:
            n = spec.min_hosts
        out += [h.name for h in hosts[: min(n, len(hosts))]]
    return out


# ---------------------------------------------------------------------- scripted capacity


def stockout_windows(scenario: Scenario | None, pool: str, t0: float) -> list[tuple[float, float]]:
    """The pool's scripted stockouts as (start, end) epoch seconds; ``t0``: when the cluster came up."""
    script = scenario.pools.get(pool) if scenario else None
    return [] if script is None else [(t0 + w.start, t0 + w.until) for w in script.stockouts]


def in_stockout(windows: Iterable[tuple[float, float]], t: float) -> bool:
    return any(a <= t < b for a, b in windows)


def provisioning_delay(scenario: Scenario | None, pool: str) -> float:
    """Seconds a new host of ``pool`` waits before its Ray node starts (none unless scripted)."""
    script = scenario.pools.get(pool) if scenario else None
    return float(script.provisioning_delay or 0.0) if script is not None else 0.0


def ready_at(requested_at: float, delay: float, windows: Iterable[tuple[float, float]]) -> float:
    """When a host asked for at ``requested_at`` may start: a request made in a stockout waits
    until the window ends (windows may chain), then the provisioning delay runs."""
    t = requested_at
    spans = sorted(windows)
    moved = True
    while moved:
        moved = False
        for a, b in spans:
            if a <= t < b:
                t, moved = b, True
    return t + delay


def due_events(scenario: Scenario | None, t0: float, now: float, applied: Iterable[int]) -> list[tuple[int, HostEvent]]:
    """Scripted host events (lose / reclaim) whose time has come and that were not applied yet."""
    if scenario is None:
        return []
    done = set(applied)
    return [(i, ev) for i, ev in enumerate(scenario.hosts) if i not in done and t0 + ev.at <= now]


# ---------------------------------------------------------------------- demand


@dataclass(frozen=True)
class PendingGang:
    """A launched gang whose placement group waits for hosts."""

    run_id: str
    pool: str
    hosts: int                 # empty hosts it needs (whole slice for a multi-host TPU gang)
    tpu_slice: str | None = None


def pending_gang(request: dict[str, Any], status: dict[str, Any], workers_up: int, spec: PoolSpec) -> PendingGang | None:
    """The gang of a launched run if it waits for its placement group (its driver says ``placing``
    and not all its workers run yet), else None."""
    if status.get("phase") != "placing" or not request.get("plan"):
        return None
    if request.get("train_app") and workers_up >= int(request["workers"]):
        return None
    plan = request["plan"]
    fit = gang_fit(spec, int(request["workers"]), dict(request.get("resources_per_worker") or {}), plan.get("strategy"))
    return PendingGang(run_id=request["run_id"], pool=request["pool"], hosts=fit.hosts, tpu_slice=plan.get("tpu_slice"))


def hosts_to_start(plans: list[HostPlan], present: set[str], count: int, gangs: Iterable[PendingGang]) -> list[str]:
    """Which absent hosts of one pool to start for a request of ``count`` hosts: the slices the
    pending gangs are pinned to first (a multi-host TPU gang lives in one slice), then by index."""
    absent = [h for h in plans if h.name not in present]
    wanted = [g.tpu_slice for g in gangs if g.tpu_slice]
    first = [h for s in dict.fromkeys(wanted) for h in absent if h.tpu_slice == s]
    rest = [h for h in absent if h not in first]
    return [h.name for h in (first + rest)[:count]]


def lifetime_due(spec: PoolSpec, started_at: float, now: float) -> tuple[str, float] | None:
    """What a ready host's run time asks for now: ("expire", end) once a DWS flex-start host's
    ``maxRunDuration`` is over, ("recycle", end) from ``nodeRecyclingLeadTime`` before it; None
    otherwise (other modes: their hosts do not end on a host's own schedule)."""
    if host_lifetime(spec) is None:
        return None
    end = host_expires_at(spec, started_at)
    if end is None:
        return None
    if end <= now:
        return ("expire", end)
    recycle = recycle_at(spec, started_at)
    if recycle is not None and recycle <= now:
        return ("recycle", end)
    return None
