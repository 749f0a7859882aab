"""``rayfleet quota simulate``: run the quota layer offline on a config and a workloads file.

A platform team loads today's state (what is admitted, what waits), optionally under a changed
config or at another time of day (quota schedules), and sees what the quota layer would decide:
admissions (with flavor and borrowing), preemptions and reclaims, and why each waiting workload
waits. It is the same code the control service runs (:mod:`rayfleet.quota`). The workloads file
format is documented in ``docs/quota.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import Field, model_validator

from .api import Accelerator, format_quantity
from .api.base import Duration, Model, Resources
from .config import PlatformConfig, load_config, pydantic_problems
from .errors import FieldProblem, SpecError
from .quota import PodSet, QuotaState, Workload
from .quota.from_api import from_platform, priority_value

Timestamp = datetime | float


class PodSetSpec(Model):
    count: int = Field(default=1, ge=1, description="Hosts in the pod set.")
    resources: Resources = Field(description="What each host asks for, e.g. {cpu: 8, memory: 64Gi, nvidia.com/gpu: 8}.")
    name: str = Field(default="main", description="Name of the pod set.")


class WorkloadSpec(Model):
    id: str = Field(min_length=1, description="Workload id (a TrainJob name).")
    queue: str = Field(description="Queue the workload is submitted to.")
    priority: int | None = Field(default=None, description="Priority value; alternative to priorityClass.")
    priority_class: str | None = Field(default=None, description="Priority class name; default: the default class, else 0.")
    created: Timestamp | None = Field(default=None, description="Creation time (RFC 3339 or seconds since the epoch); default: file order.")
    runtime: Duration | None = Field(default=None, description="How long it runs once admitted (used with --cycles); empty: until the end.")
    accelerator: Accelerator | None = Field(default=None, description="Accelerator the hosts need; restricts flavors to pools of it.")
    flavors: list[str] | None = Field(default=None, description="Flavors it may run on (overrides the pool matching).")
    pod_sets: list[PodSetSpec] | None = Field(default=None, min_length=1, description="The gang: pod sets of count x resources.")
    workers: int | None = Field(default=None, ge=1, description="Shorthand for one pod set: number of hosts.")
    resources_per_worker: Resources | None = Field(default=None, description="Shorthand for one pod set: resources per host.")

    @model_validator(mode="after")
    def _shape(self):
        if self.pod_sets is None and self.resources_per_worker is None:
            raise ValueError("podSets: give podSets, or workers and resourcesPerWorker")
        if self.pod_sets is not None and (self.workers is not None or self.resources_per_worker is not None):
            raise ValueError("podSets: give either podSets or workers/resourcesPerWorker, not both")
        if self.priority is not None and self.priority_class is not None:
            raise ValueError("priority: give either priority or priorityClass, not both")
        return self

    def podsets(self) -> list[PodSetSpec]:
        if self.pod_sets is not None:
            return self.pod_sets
        # Already validated (quantities parsed): build without validating again.
        return [PodSetSpec.model_construct(count=self.workers or 1, resources=dict(self.resources_per_worker or {}), name="workers")]


class AdmittedSpec(WorkloadSpec):
    flavor: str = Field(description="Flavor it was admitted on.")
    order: int | None = Field(default=None, description="Admission order (later admissions are preempted first); default: file order.")
    admitted_at: Timestamp | None = Field(default=None, description="When it was admitted; default: the simulation start.")


class WorkloadsFile(Model):
    now: Timestamp | None = Field(default=None, description="Time of the first cycle (overridden by --at); default: now.")
    pending: list[WorkloadSpec] = Field(default_factory=list, description="Workloads waiting for quota.")
    admitted: list[AdmittedSpec] = Field(default_factory=list, description="Workloads admitted already (today's state).")

    @model_validator(mode="after")
    def _unique(self):
        seen: dict[str, str] = {}
        for where, items in (("pending", self.pending), ("admitted", self.admitted)):
            for i, w in enumerate(items):
                if w.id in seen:
                    raise ValueError(f"{where}.{i}.id: workload {w.id!r} is listed twice (also in {seen[w.id]})")
                seen[w.id] = f"{where}.{i}"
        return self


def to_seconds(value: Timestamp) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def parse_time(text: str) -> float:
    """Seconds since the epoch from RFC 3339 / ISO 8601 (``2026-03-02T09:00:00Z``) or a number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return to_seconds(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use RFC 3339 (2026-03-02T09:00:00Z) or seconds since the epoch") from None


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


def load_workloads(path: str | Path) -> WorkloadsFile:
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SpecError(FieldProblem(field="(file)", problem=f"cannot read: {e.strerror or e}", file=file)) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise SpecError(FieldProblem(field="(yaml)", problem=f"YAML syntax error: {e}", file=file)) from None
    try:
        return WorkloadsFile.model_validate(data)
    except pydantic.ValidationError as e:
        raise SpecError(pydantic_problems(e, file=file, document=None)) from None


class Simulation:
    """Built from a platform config and a workloads file; runs cycles."""

    def __init__(self, platform: PlatformConfig, spec: WorkloadsFile, *, at: float | None = None, fair_sharing: bool | None = None, file: str | None = None):
        self.platform = platform
        self.start = at if at is not None else (to_seconds(spec.now) if spec.now is not None else datetime.now(tz=UTC).timestamp())
        self.runtime: dict[str, float | None] = {}
        self.workloads: dict[str, Workload] = {}
        problems: list[FieldProblem] = []
        pending = [self._workload(w, f"pending.{i}", i, problems, file) for i, w in enumerate(spec.pending)]
        n = len(spec.pending)
        admitted = [(self._workload(w, f"admitted.{i}", n + i, problems, file), w, i) for i, w in enumerate(spec.admitted)]
        for wl, w, i in admitted:
            if wl is None:
                continue
            if w.queue not in platform.queues:
                problems.append(FieldProblem(f"admitted.{i}.queue", f"unknown queue {w.queue!r}", file=file))
            elif w.flavor not in platform.queues[w.queue].spec.flavor_order():
                problems.append(FieldProblem(f"admitted.{i}.flavor", f"queue {w.queue!r} has no flavor {w.flavor!r}", file=file))
        if problems:
            raise SpecError(problems)
        self.state = QuotaState(from_platform(platform, fair_sharing=fair_sharing), self.start)
        self.finish: dict[str, float] = {}
        self._last: tuple[list[dict[str, Any]], list[str]] = ([], [])   # the last cycle's waits and victims (for final())
        ordered = sorted(((w.order if w.order is not None else i, i, wl, w) for wl, w, i in admitted), key=lambda x: (x[0], x[1]))
        for order, i, wl, w in ordered:
            at_ = to_seconds(w.admitted_at) if w.admitted_at is not None else self.start
            try:
                self.state.restore(wl, w.flavor, order=order, admitted_at=at_)
            except ValueError as e:
                raise SpecError(FieldProblem(f"admitted.{i}", str(e), file=file)) from None
            self._track(wl.id, at_)
        for wl in pending:
            if wl is not None:
                self.state.submit(wl)

    def _workload(self, w: WorkloadSpec, where: str, k: int, problems: list[FieldProblem], file: str | None) -> Workload | None:
        try:
            prio = w.priority if w.priority is not None else priority_value(self.platform.priority_classes, w.priority_class)
        except KeyError as e:
            problems.append(FieldProblem(f"{where}.priorityClass", str(e.args[0]), file=file))
            return None
        podsets = w.podsets()
        flavors: tuple[str, ...] | None
        if w.flavors is not None:
            flavors = tuple(w.flavors)
        elif w.queue in self.platform.queues:
            allowed: list[str] | None = None
            for ps in podsets:
                fs = self.platform.flavors_for(w.queue, w.accelerator, ps.resources)
                allowed = fs if allowed is None else [f for f in allowed if f in fs]
            flavors = tuple(allowed or ())
        else:
            flavors = None
        created = to_seconds(w.created) if w.created is not None else self.start - 1e6 + k
        wl = Workload(
            id=w.id,
            queue=w.queue,
            podsets=tuple(PodSet(ps.count, dict(ps.resources), ps.name) for ps in podsets),
            priority=prio,
            created=created,
            flavors=flavors,
        )
        self.workloads[w.id] = wl
        self.runtime[w.id] = w.runtime
        return wl

    def _track(self, wid: str, admitted_at: float) -> None:
        rt = self.runtime.get(wid)
        if rt is not None:
            self.finish[wid] = admitted_at + rt

    def run(self, cycles: int = 1, step: float = 60.0) -> list[dict[str, Any]]:
        out = []
        reclaims = self.state.reconcile(self.start)
        for c in range(cycles):
            now = self.start + c * step
            released = []
            for wid, t in sorted(self.finish.items(), key=lambda x: (x[1], x[0])):
                if t <= now and self.state.is_admitted(wid):
                    self.state.release(wid)
                    released.append(wid)
                    del self.finish[wid]
            res = self.state.schedule(now)
            if c == 0 and reclaims:
                res.preempted[:0] = reclaims
            for p in res.preempted:
                self.finish.pop(p.victim_id, None)
                self.state.submit(self.workloads[p.victim_id])  # requeued, as the controller does
            for a in res.admitted:
                self._track(a.workload_id, now)
            d = res.to_dict()
            self._last = (d["waiting"], [p["workload"] for p in d["preempted"]])
            out.append(
                {
                    "cycle": c + 1,
                    "time": iso(now),
                    "released": released,
                    "admitted": [_fmt_decision(x) for x in d["admitted"]],
                    "preempted": d["preempted"],
                    "waiting": [_fmt_wait(x) for x in d["waiting"]],
                }
            )
        return out

    def final(self) -> dict[str, Any]:
        """The state after the last cycle: who is admitted (in admission order, on which flavor,
        using what), and who waits and why (the victims of the last cycle are back in their queue,
        not yet decided on)."""
        waiting, requeued = self._last
        admitted = [{"workload": wid, "queue": a.workload.queue, "flavor": a.flavor, "usage": _fmt_resources(dict(a.usage))}
                    for wid, a in self.state.admitted.items()]
        waits = [{"workload": w["workload"], "queue": w["queue"], "position": w["position"], "code": w["code"], "reason": w["reason"]}
                 for w in waiting]
        waits += [{"workload": wid, "queue": self.workloads[wid].queue, "position": None, "code": "Queued",
                   "reason": "preempted in the last cycle, back in its queue"} for wid in requeued]
        return {"admitted": admitted, "waiting": waits}

    def queues(self) -> dict[str, Any]:
        out = {}
        for name in self.state.queue_names():
            u = self.state.queue_usage(name)
            out[name] = {
                "cohort": u.cohort,
                "pending": u.pending,
                "admitted": u.admitted,
                "nominal": _by_flavor(u.nominal),
                "usage": _by_flavor(u.usage),
                "borrowed": _by_flavor(u.borrowed),
                "lent": _by_flavor(u.lent),
            }
        return out


def _by_flavor(values) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (flavor, resource), v in sorted(values.items()):
        if v:
            out.setdefault(flavor, {})[resource] = format_quantity(resource, v)
    return out


def _fmt_resources(values: dict[str, int]) -> dict[str, Any]:
    return {r: format_quantity(r, v) for r, v in sorted(values.items())}


def _fmt_decision(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d["usage"] = _fmt_resources(d["usage"])
    d["borrowed"] = _fmt_resources(d["borrowed"])
    return d


def _fmt_wait(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d["blocking"] = [
        {**b, "requested": format_quantity(b["resource"], b["requested"]), "available": format_quantity(b["resource"], b["available"])}
        for b in d["blocking"]
    ]
    return d


def simulate(
    config_paths: Iterable[str | Path],
    workloads_path: str | Path,
    *,
    at: float | None = None,
    cycles: int = 1,
    step: float = 60.0,
    fair_sharing: bool | None = None,
) -> dict[str, Any]:
    """Load the config and the workloads file, run ``cycles`` quota cycles ``step`` seconds apart,
    and return the decisions and the final queue usage (JSON-ready). ``fair_sharing`` None follows
    the config's Cluster ``spec.fairSharing``."""
    paths = [str(p) for p in config_paths]
    platform = load_config(paths)
    spec = load_workloads(workloads_path)
    sim = Simulation(platform, spec, at=at, fair_sharing=fair_sharing, file=str(workloads_path))
    cycles_out = sim.run(cycles, step)
    return {"config": paths, "workloads": str(workloads_path), "start": iso(sim.start), "cycles": cycles_out, "final": sim.final(),
            "queues": sim.queues()}
