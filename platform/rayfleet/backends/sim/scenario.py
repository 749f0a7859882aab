"""Scenario files for the simulated backend: what its hosts, runs and services do, and when.

The vocabulary is the sim's Python API (:class:`~rayfleet.backends.sim.backend.SimBackend`):
a scenario is loaded into :class:`Scenario` (strict: an unknown or bad field is a
:class:`~rayfleet.errors.SpecError` naming its path) and applied with ``SimBackend.apply``. Times in
a scenario file are seconds after the sim came up; the Python API takes clock times. The format is
documented in ``docs/sim.md``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import pydantic
import yaml
from pydantic import Field, model_validator

from ...api.base import Duration, Model
from ...config import pydantic_problems
from ...errors import FieldProblem, SpecError


class RunScript(Model):
    """What every attempt of a job does once its gang is placed."""

    runtime: Duration | None = Field(default=None, gt=0, description="Seconds of work from step 0 to the end (default: the cluster's spec.sim.defaultRuntime). A resumed attempt only does what is left after its checkpoint.")
    step_time: Duration = Field(default=1.0, gt=0, description="Seconds per training step (steps = runtime / stepTime).")
    startup: Duration = Field(default=0.0, ge=0, description="Seconds from the gang being placed to the run being RUNNING.")
    checkpoints: list[int] = Field(default_factory=list, description="Steps at which a checkpoint is saved (reported as lastCheckpointStep; a later attempt resumes from the latest).")
    checkpoint_every: int | None = Field(default=None, gt=0, description="Save a checkpoint every this many steps (in addition to `checkpoints`).")
    fail_at: Duration | None = Field(default=None, ge=0, description="Seconds after an attempt starts RUNNING at which it fails (FAILED with failMessage).")
    fail_attempts: list[int] | None = Field(default=None, description="Attempts (1, 2, ...) that fail at failAt; empty or absent: every attempt.")
    fail_message: str = Field(default="simulated failure", description="The FAILED run's message.")
    runtime_jitter: Duration = Field(default=0.0, ge=0, description="Up to this many seconds (drawn from the seed) added to each attempt's runtime.")

    @model_validator(mode="after")
    def _steps(self) -> RunScript:
        if any(s <= 0 for s in self.checkpoints):
            raise ValueError("checkpoints: steps are positive integers")
        if self.fail_attempts is not None and any(a < 1 for a in self.fail_attempts):
            raise ValueError("failAttempts: attempts are numbered from 1")
        return self

    def fails(self, attempt: int) -> bool:
        return self.fail_at is not None and (not self.fail_attempts or attempt in self.fail_attempts)

    def checkpoint_at_or_below(self, step: int, above: int) -> int | None:
        """The latest checkpoint step in (above, step], or None."""
        best = None
        if self.checkpoint_every:
            k = (step // self.checkpoint_every) * self.checkpoint_every
            if k > above:
                best = k
        for c in self.checkpoints:
            if above < c <= step and (best is None or c > best):
                best = c
        return best


class RunRule(RunScript):
    job: str = Field(min_length=1, description="Job name (metadata.name) this rule scripts; shell-style wildcards (`train-*`) match many. The first matching rule applies.")


class Window(Model):
    start: Duration = Field(default=0.0, ge=0, alias="from", description="Seconds after start the stockout begins.")
    until: Duration = Field(ge=0, description="Seconds after start the stockout ends.")

    @model_validator(mode="after")
    def _order(self) -> Window:
        if self.until <= self.start:
            raise ValueError("until: must be after from")
        return self


class PoolScript(Model):
    initial_hosts: int | None = Field(default=None, ge=0, description="Hosts ready when the sim comes up (a calendar pool: when its window opens). Default: the pool's minReplicas hosts; a reservation's or calendar booking's: all of them. Multi-host TPU pools round up to whole slices. The rest are provisioned when a gang needs them.")
    provisioning_delay: Duration | None = Field(default=None, ge=0, description="Seconds a host takes to come up once requested (default: spec.sim.provisioningDelay).")
    provisioning_jitter: Duration | None = Field(default=None, ge=0, description="Up to this many seconds (drawn from the seed) added to each host's delay.")
    stockouts: list[Window] = Field(default_factory=list, description="Windows in which no new host can be provisioned: requests wait until the window ends (a queued DWS request arrives at its end at the earliest); on a non-queued DWS pool a gang needing new hosts ends STOCKOUT at once.")


class HostEvent(Model):
    at: Duration = Field(ge=0, description="Seconds after start.")
    lose: str | None = Field(default=None, min_length=1, description="A host lost without notice: its runs are LOST at once.")
    reclaim: str | None = Field(default=None, min_length=1, description="A host reclaimed with notice (spot preemption): its runs are LOST when the notice runs out.")
    notice: Duration | None = Field(default=None, ge=0, description="Seconds of notice of a reclaim (default: the pool's reclaimNotice; 30 s for a pool that is not spot).")

    @model_validator(mode="after")
    def _one(self) -> HostEvent:
        if (self.lose is None) == (self.reclaim is None):
            raise ValueError("lose: give exactly one of lose or reclaim")
        return self

    @property
    def host(self) -> str:
        return self.lose or self.reclaim or ""


class FaultEvent(Model):
    host: str = Field(min_length=1, description="The faulty host.")
    start: Duration = Field(default=0.0, ge=0, alias="from", description="Seconds after start the fault begins.")
    until: Duration | None = Field(default=None, ge=0, description="Seconds after start it ends (default: at the host's next repair; a repair does not end it sooner).")
    message: str | None = Field(default=None, min_length=1, description="The failed runs' message (default: XID 79 on <host>).")
    fail_after: Duration = Field(default=5.0, ge=0, description="Seconds after a run starts on the host (or after the fault begins, for a run already running) that it is FAILED.")

    @model_validator(mode="after")
    def _order(self) -> FaultEvent:
        if self.until is not None and self.until <= self.start:
            raise ValueError("until: must be after from")
        return self


class UnhealthyEvent(Model):
    host: str = Field(min_length=1, description="The host the backend reports unhealthy (healthy=false, as GKE node conditions do) until it is repaired.")
    at: Duration = Field(ge=0, description="Seconds after start.")
    message: str | None = Field(default=None, min_length=1, description="Why (default: a hardware problem).")


class LoadStep(Model):
    at: Duration = Field(ge=0, description="Seconds after start.")
    replicas: int = Field(ge=0, description="Replicas Serve's autoscaler asks for from then on.")


class ServiceScript(Model):
    ready_after: Duration = Field(default=0.0, ge=0, description="Seconds from a replica group's hosts being placed to the group being ready (routed to).")
    load: list[LoadStep] = Field(default_factory=list, description="What load asks for over time (default: minReplicas).")
    request_rate: float = Field(default=0.0, ge=0, le=1e6, description="Requests per second clients send once the service is live (its first group routed), spread evenly over the routed groups; 0: no requests are modelled.")
    request_latency: Duration = Field(default=0.1, ge=0, le=3600, description="Seconds each request takes: requests in flight on a group that goes without a drain fail, and a draining group keeps its hosts this long.")


class ServiceRule(ServiceScript):
    name: str = Field(min_length=1, description="Service name; shell-style wildcards match many. The first matching rule applies.")


class Defaults(Model):
    run: RunScript = Field(default_factory=RunScript, description="What jobs no rule matches do.")
    service: ServiceScript = Field(default_factory=ServiceScript, description="What services no rule matches do.")


class Scenario(Model):
    kind: Literal["SimScenario"] = Field(default="SimScenario", description="Marks the file as a sim scenario.")
    seed: int | None = Field(default=None, description="Seed (overrides spec.sim.seed).")
    defaults: Defaults = Field(default_factory=Defaults, description="Behaviour of jobs and services no rule matches.")
    pools: dict[str, PoolScript] = Field(default_factory=dict, description="Per pool: initial hosts, provisioning delay, stockouts.")
    hosts: list[HostEvent] = Field(default_factory=list, description="Hosts lost or reclaimed, and when.")
    faults: list[FaultEvent] = Field(default_factory=list, description="Faulty hosts: runs on them FAIL while the fault holds.")
    unhealthy: list[UnhealthyEvent] = Field(default_factory=list, description="Hosts the backend reports unhealthy, and from when.")
    runs: list[RunRule] = Field(default_factory=list, description="What jobs do, by job name.")
    services: list[ServiceRule] = Field(default_factory=list, description="What services do, by name.")

    def run_script(self, job: str) -> RunScript | None:
        return next((r for r in self.runs if r.job == job or fnmatchcase(job, r.job)), None)

    def service_script(self, name: str) -> ServiceScript | None:
        return next((s for s in self.services if s.name == name or fnmatchcase(name, s.name)), None)

    def check_against(self, pools: dict[str, list[str]], *, file: str | None = None) -> None:
        """Every pool and host the scenario names exists (``pools``: pool -> host names)."""
        problems = [FieldProblem(field=f"pools.{p}", problem=f"unknown pool (pools: {sorted(pools)})", file=file)
                    for p in self.pools if p not in pools]
        hosts = {h for names in pools.values() for h in names}
        for i, ev in enumerate(self.hosts):
            if ev.host not in hosts:
                key = "lose" if ev.lose else "reclaim"
                problems.append(FieldProblem(field=f"hosts.{i}.{key}", problem=f"unknown host {ev.host!r}", file=file))
        for section, events in (("faults", self.faults), ("unhealthy", self.unhealthy)):
            for i, e in enumerate(events):
                if e.host not in hosts:
                    problems.append(FieldProblem(field=f"{section}.{i}.host", problem=f"unknown host {e.host!r}", file=file))
        if problems:
            raise SpecError(problems)


def parse_scenario(data: object, *, file: str | None = None) -> Scenario:
    if not isinstance(data, dict):
        raise SpecError(FieldProblem(field="(document)", problem="a scenario is a mapping (seed, defaults, pools, hosts, faults, unhealthy, runs, services)", file=file))
    try:
        return Scenario.model_validate(data)
    except pydantic.ValidationError as e:
        raise SpecError(pydantic_problems(e, file=file, document="SimScenario")) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; a bad one raises SpecError naming file and field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(FieldProblem(field="spec.sim.scenario", problem=f"cannot read scenario file: {e.strerror or e}", file=str(p))) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(FieldProblem(field="(file)", problem=f"not valid YAML: {e}", file=str(p))) from None
    return parse_scenario(data, file=str(p))
