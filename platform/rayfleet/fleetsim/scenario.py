"""Fleet scenario files: the sim's scenario (pools, hosts, runs, services' behaviour) plus a stream
of submissions, training jobs and services, each at a time.

A fleet scenario *is* a :class:`~rayfleet.backends.sim.scenario.Scenario` (the same fields, applied
to the simulated backend as they are) with ``jobs:`` (TrainJobs to submit) and, in ``services:``,
entries that carry a ``spec`` (Services to deploy; an entry without one only scripts a service's
behaviour, as in a sim scenario). Loading is strict: a bad field is a :class:`SpecError` naming
its path (``jobs.2.gang.workers``), including what only the platform config can tell (an unknown
queue, a gang no flavor of the queue can hold). The format is documented in ``docs/capacity.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import Field, model_validator

from ..api import FailurePolicy, GangSpec, Service, ServiceSpec, TrainJob
from ..api.base import Duration, Labels
from ..backends.sim.scenario import RunScript, Scenario, ServiceRule
from ..config import PlatformConfig, pydantic_problems
from ..errors import FieldProblem, SpecError
from ..server import admission

#: When simulated time starts unless the scenario says (a fixed time: the same file gives the same run).
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
COPIES_MAX = 10000


class JobStream(RunScript):
    """TrainJobs submitted at ``at`` (``count`` copies, ``every`` seconds apart). The run fields
    (runtime, checkpointEvery, failAt, ...) script what each attempt does, over the scenario's
    ``runs:`` rule or default for the name."""

    name: str = Field(min_length=1, max_length=200, description="Job name; with count > 1 the copies are <name>-1 ... <name>-<count>.")
    at: Duration = Field(default=0.0, ge=0, description="Seconds (or a duration) after the start when the (first) job is submitted.")
    count: int = Field(default=1, ge=1, le=COPIES_MAX, description="Copies of the job (at most 10000).")
    every: Duration = Field(default=0.0, ge=0, description="Seconds between the submissions of consecutive copies.")
    queue: str = Field(min_length=1, description="Queue the jobs are submitted to.")
    priority_class: str | None = Field(default=None, description="Priority class; default: the config's default class.")
    gang: GangSpec = Field(default_factory=GangSpec, description="The gang (workers, resourcesPerWorker, accelerator, placementStrategy), as in a TrainJob.")
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy, description="maxRestarts, maxDisruptions, disruptionBackoff, as in a TrainJob.")
    max_run_duration: Duration | None = Field(default=None, gt=0, description="The TrainJob's maxRunDuration.")
    entrypoint: str = Field(default="python train.py", min_length=1, description="The TrainJob's entrypoint (the sim does not run it).")
    labels: Labels = Field(default_factory=dict, description="The TrainJob's labels.")

    def names(self) -> list[str]:
        return [self.name] if self.count == 1 else [f"{self.name}-{i}" for i in range(1, self.count + 1)]

    def run_fields(self) -> dict[str, Any]:
        """The run-script fields this entry sets itself."""
        return {k: getattr(self, k) for k in RunScript.model_fields if k in self.model_fields_set}


class ServiceEntry(ServiceRule):
    """A service's behaviour (readyAfter, load, as in a sim scenario) and, with ``spec``, its deployment."""

    at: Duration = Field(default=0.0, ge=0, description="Seconds after the start when the service is deployed (with spec).")
    spec: ServiceSpec | None = Field(default=None, description="The Service's spec: deploy it at `at`. Without it the entry only scripts behaviour.")
    delete_at: Duration | None = Field(default=None, ge=0, description="Seconds after the start when the service is deleted (with spec).")

    @model_validator(mode="after")
    def _deploy(self) -> ServiceEntry:
        if self.spec is None and ("at" in self.model_fields_set or self.delete_at is not None):
            raise ValueError("spec: at and deleteAt need a spec (the service to deploy)")
        if self.delete_at is not None and self.delete_at <= self.at:
            raise ValueError("deleteAt: must be after at")
        return self


class FleetScenario(Scenario):
    kind: Literal["FleetScenario", "SimScenario"] = Field(default="FleetScenario", description="Marks the file as a fleet scenario.")  # type: ignore[assignment]
    start: datetime | None = Field(default=None, description="Simulated time of the start (RFC 3339); default 2026-01-05T00:00:00Z. Calendar windows in the config are absolute times.")
    until: Duration | None = Field(default=None, gt=0, description="How long to simulate (overridden by --until); default: until every job has ended and nothing scripted is left.")
    sample_every: Duration = Field(default=300.0, gt=0, description="How often queue usage is sampled.")
    max_step: Duration = Field(default=300.0, gt=0, le=3600, description="Longest jump of simulated time while anything is in flight (time rules the driver cannot foresee are seen within it).")
    jobs: list[JobStream] = Field(default_factory=list, description="TrainJobs to submit, and when.")
    services: list[ServiceEntry] = Field(default_factory=list, description="Services: behaviour (readyAfter, load) and, with spec, when to deploy them.")  # type: ignore[assignment]

    def start_epoch(self) -> float:
        t = self.start or DEFAULT_START
        return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Submission:
    """One thing to do at a time: submit a job, deploy or delete a service."""

    at: float          # seconds after the start
    order: int         # file order, for submissions at the same time
    kind: Literal["job", "service", "delete"]
    name: str
    doc: TrainJob | Service | None
    entry: int         # index in jobs: / services:


def _remap(problems: list[FieldProblem], where: str, file: str | None, renames: dict[str, str]) -> list[FieldProblem]:
    out = []
    for p in problems:
        field = p.field
        for old, new in renames.items():
            if field == old or field.startswith(old + "."):
                field = new + field[len(old):]
                break
        out.append(FieldProblem(field=f"{where}.{field}", problem=p.problem, file=file))
    return out


def _job_doc(entry: JobStream, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"entrypoint": entry.entrypoint, "queue": entry.queue,
                            "gang": entry.gang.model_dump(mode="json", by_alias=True, exclude_none=True),
                            "failurePolicy": entry.failure_policy.model_dump(mode="json", by_alias=True), "labels": entry.labels}
    if entry.priority_class is not None:
        spec["priorityClass"] = entry.priority_class
    if entry.max_run_duration is not None:
        spec["maxRunDuration"] = entry.max_run_duration
    return {"metadata": {"name": name}, "spec": spec}


_JOB_FIELDS = {"metadata.name": "name", "spec.gang": "gang", "spec.queue": "queue", "spec.priorityClass": "priorityClass",
               "spec.failurePolicy": "failurePolicy", "spec.maxRunDuration": "maxRunDuration", "spec": "(entry)"}
_SERVICE_FIELDS = {"metadata.name": "name", "spec": "spec"}


def submissions(config: PlatformConfig, scenario: FleetScenario, *, file: str | None = None) -> list[Submission]:
    """Every submission of the stream, checked against the config (as the control service would
    check it at submit), in time order. A problem is a SpecError naming the scenario field."""
    problems: list[FieldProblem] = []
    out: list[Submission] = []
    seen: dict[str, str] = {}
    order = 0
    for i, entry in enumerate(scenario.jobs):
        for k, name in enumerate(entry.names()):
            where = f"jobs.{i}"
            if name in seen:
                problems.append(FieldProblem(field=f"{where}.name", problem=f"job {name!r} is also submitted by {seen[name]}", file=file))
                continue
            seen[name] = where
            try:
                job = TrainJob.model_validate(_job_doc(entry, name))
                admission.check_job(config, job)
            except pydantic.ValidationError as e:
                problems += _remap(pydantic_problems(e, file=None, document=None), where, file, _JOB_FIELDS)
                break
            except SpecError as e:
                problems += _remap(list(e.problems), where, file, _JOB_FIELDS)
                break
            out.append(Submission(entry.at + k * entry.every, order, "job", name, job, i))
            order += 1
    services: dict[str, str] = {}
    for i, svc_entry in enumerate(scenario.services):
        if svc_entry.spec is None:
            continue
        where = f"services.{i}"
        if svc_entry.name in services:
            problems.append(FieldProblem(field=f"{where}.name", problem=f"service {svc_entry.name!r} is also deployed by {services[svc_entry.name]}", file=file))
            continue
        services[svc_entry.name] = where
        try:
            svc = Service.model_validate({"metadata": {"name": svc_entry.name}, "spec": svc_entry.spec.model_dump(mode="json", by_alias=True, exclude_none=True)})
            admission.check_service(config, svc)
        except pydantic.ValidationError as e:
            problems += _remap(pydantic_problems(e, file=None, document=None), where, file, _SERVICE_FIELDS)
            continue
        except SpecError as e:
            problems += _remap(list(e.problems), where, file, _SERVICE_FIELDS)
            continue
        out.append(Submission(svc_entry.at, order, "service", svc.name, svc, i))
        order += 1
        if svc_entry.delete_at is not None:
            out.append(Submission(svc_entry.delete_at, order, "delete", svc.name, None, i))
            order += 1
    if problems:
        raise SpecError(problems)
    return sorted(out, key=lambda s: (s.at, s.order))


def parse_fleet_scenario(data: object, *, file: str | None = None) -> FleetScenario:
    if not isinstance(data, dict):
        raise SpecError(FieldProblem(field="(document)", problem="a fleet scenario is a mapping (start, until, jobs, services, pools, hosts, runs, ...)", file=file))
    try:
        return FleetScenario.model_validate(data)
    except pydantic.ValidationError as e:
        raise SpecError(pydantic_problems(e, file=file, document="FleetScenario")) from None


def load_fleet_scenario(path: str | Path) -> FleetScenario:
    """Read and validate a fleet scenario file; a bad one raises SpecError naming file and field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(FieldProblem(field="(file)", problem=f"cannot read scenario file: {e.strerror or e}", file=str(p))) from None
    data = _json(text)
    if data is None:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError(FieldProblem(field="(file)", problem=f"not valid YAML: {e}", file=str(p))) from None
    return parse_fleet_scenario(data, file=str(p))


def _json(text: str) -> object | None:
    """A scenario written as JSON (which is YAML), read by the JSON parser: ``rayfleet simulate
    trace`` writes tens of thousands of jobs, which PyYAML takes minutes to read. None: not JSON
    (the YAML parser reads it, and reports its problems)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
