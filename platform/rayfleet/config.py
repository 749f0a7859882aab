"""Cluster config files: ``cluster_configs/*.yaml`` -> api objects, cross-checked.

A file holds several YAML documents, each discriminated by ``kind:``. Every error names the
file, the document (Kind/name), the field path and the problem; all errors of all files are
reported at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from .api import (
    CONFIG_KINDS,
    GPU,
    TPU,
    Accelerator,
    Cluster,
    Cohort,
    ComputeClass,
    Document,
    Flavor,
    Pool,
    PriorityClass,
    Queue,
    Team,
)
from .errors import ConfigError, FieldProblem


@dataclass
class PlatformConfig:
    """Everything one set of config files describes."""

    pools: dict[str, Pool] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)
    compute_classes: dict[str, ComputeClass] = field(default_factory=dict)
    cohorts: dict[str, Cohort] = field(default_factory=dict)
    queues: dict[str, Queue] = field(default_factory=dict)
    priority_classes: dict[str, PriorityClass] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    cluster: Cluster | None = None      # the first Cluster document (platform-wide settings: fair sharing, host health)
    clusters: dict[str, Cluster] = field(default_factory=dict)   # every Cluster document, in file order
    sources: dict[str, str] = field(default_factory=dict)  # "Kind/name" -> file

    def objects(self) -> list[Document]:
        out: list[Document] = list(self.clusters.values()) or ([self.cluster] if self.cluster else [])
        for bucket in (self.pools, self.flavors, self.compute_classes, self.cohorts, self.priority_classes, self.teams, self.queues):
            out.extend(bucket.values())
        return out

    def cluster_view(self, name: str) -> PlatformConfig:
        """The config as one member cluster's backend sees it: that Cluster document alone."""
        cluster = self.clusters[name]
        return dataclasses.replace(self, cluster=cluster, clusters={name: cluster})

    def clusters_with_pool(self, pool: str) -> list[str]:
        """The clusters that run ``pool`` (a Cluster without ``spec.pools`` runs every pool)."""
        return [n for n, c in self.clusters.items() if not c.spec.pools or pool in c.spec.pools]

    def pool_of_flavor(self, flavor: str) -> Pool:
        return self.pools[self.flavors[flavor].spec.pool]

    def priority_value(self, name: str | None) -> int:
        """Priority of a class name; None -> the default class, else 0."""
        if name is None:
            for pc in self.priority_classes.values():
                if pc.spec.default:
                    return pc.spec.value
            return 0
        return self.priority_classes[name].spec.value

    def flavors_for(self, queue: str, accelerator: Accelerator | None, resources: dict[str, int]) -> list[str]:
        """Flavors of ``queue`` (in its order) that can run hosts asking for ``resources``.

        A named accelerator restricts to pools of that accelerator; an accelerator resource without
        a name (e.g. 2 nvidia.com/gpu) to pools offering it; no accelerator at all to CPU-only pools
        (accelerator nodes are tainted on GKE, so CPU work never lands there). The host must hold
        the per-host request.
        """
        wants_accel = {r for r in (GPU, TPU) if resources.get(r)}
        out = []
        for name in self.queues[queue].spec.flavor_order():
            pool = self.pool_of_flavor(name).spec
            if accelerator is not None:
                if pool.accelerator != accelerator:
                    continue
            elif wants_accel:
                if pool.accelerator is None or pool.accelerator.resource not in wants_accel:
                    continue
            elif pool.accelerator is not None:
                continue
            host = pool.host_resources()
            if all(host.get(r, 0) >= amount for r, amount in resources.items() if amount):
                out.append(name)
        return out


_BUCKETS = {
    "Pool": "pools",
    "Flavor": "flavors",
    "ComputeClass": "compute_classes",
    "Cohort": "cohorts",
    "Queue": "queues",
    "PriorityClass": "priority_classes",
    "Team": "teams",
}

_FIELD_PREFIX = re.compile(r"^(?:Value error, )?([A-Za-z][\w.]*): (.*)$", re.S)


def pydantic_problems(err: pydantic.ValidationError, *, file: str | None, document: str | None, prefix: tuple = ()) -> list[FieldProblem]:
    """Turn a pydantic error into FieldProblems whose field is a dotted path (``spec.gang.workers``).

    Model validators that know a more precise field start their message with ``field: `` and the
    field is appended to the path.
    """
    return error_problems(err.errors(include_url=False), file=file, document=document, prefix=prefix)


def error_problems(errors: Iterable[Any], *, file: str | None, document: str | None, prefix: tuple = (),
                   whole: str = "(document)") -> list[FieldProblem]:
    """FieldProblems of pydantic's error dicts (``ValidationError.errors()``, also what FastAPI reports
    for a request body); ``whole`` names an error about the whole input."""
    out = []
    for e in errors:
        loc = [str(p) for p in (*prefix, *e["loc"])]
        # Drop pydantic's union-member tags (e.g. 'reservation' of a discriminated union).
        msg = e["msg"]
        m = _FIELD_PREFIX.match(msg)
        if m and e["type"] == "value_error":
            loc.append(m.group(1))
            msg = m.group(2)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] in ("enum", "literal_error"):
            msg = f"{msg} (got {e.get('input')!r})"
        out.append(FieldProblem(field=".".join(loc) or whole, problem=msg, file=file, document=document))
    return out


def parse_document(doc: Any, *, file: str, index: int, kinds: dict[str, type[Document]] = CONFIG_KINDS) -> tuple[Document | None, list[FieldProblem]]:
    """Validate one YAML document into its kind's model."""
    where = f"document {index + 1}"
    if not isinstance(doc, dict):
        return None, [FieldProblem(field="(document)", problem=f"expected a mapping with kind:, got {type(doc).__name__}", file=file, document=where)]
    kind = doc.get("kind")
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    if name:
        where = f"{kind or '?'}/{name}"
    if kind not in kinds:
        return None, [FieldProblem(field="kind", problem=f"unknown kind {kind!r}; expected one of {', '.join(kinds)}", file=file, document=where)]
    try:
        return kinds[kind].model_validate(doc), []
    except pydantic.ValidationError as e:
        return None, pydantic_problems(e, file=file, document=where)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(paths: Iterable[str | Path]) -> PlatformConfig:
    """Load and cross-check config files. Raises ConfigError listing every problem."""
    cfg = PlatformConfig()
    problems: list[FieldProblem] = []
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError(FieldProblem(field="(files)", problem="no config file given"))
    for path in paths:
        file = str(path)
        try:
            text = path.read_text()
        except OSError as e:
            problems.append(FieldProblem(field="(file)", problem=f"cannot read: {e.strerror or e}", file=file))
            continue
        try:
            # libyaml's safe loader where PyYAML was built with it (the same documents, ~10x faster)
            docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]  # noqa: S506 - a safe loader
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problems.append(FieldProblem(field="(yaml)", problem=f"YAML syntax error: {line}{getattr(e, 'problem', None) or e}", file=file))
            continue
        if not docs:
            problems.append(FieldProblem(field="(file)", problem="the file holds no documents", file=file))
            continue
        for i, doc in enumerate(docs):
            obj, probs = parse_document(doc, file=file, index=i)
            problems.extend(probs)
            if obj is None:
                continue
            ref = obj.ref()
            if obj.KIND == "Cluster":
                if obj.name in cfg.clusters:
                    problems.append(FieldProblem(field="metadata.name", problem=f"duplicate name: {ref} is also defined in {cfg.sources[ref]}", file=file, document=ref))
                    continue
                cfg.clusters[obj.name] = obj  # type: ignore[assignment]
                if cfg.cluster is None:
                    cfg.cluster = obj  # type: ignore[assignment]
            else:
                bucket = getattr(cfg, _BUCKETS[obj.KIND])
                if obj.name in bucket:
                    problems.append(FieldProblem(field="metadata.name", problem=f"duplicate name: {ref} is also defined in {cfg.sources[ref]}", file=file, document=ref))
                    continue
                bucket[obj.name] = obj
            cfg.sources[ref] = file
    problems.extend(cross_check(cfg))
    if problems:
        raise ConfigError(problems)
    return cfg


def _check_resource_groups(cfg: PlatformConfig, obj: Document, groups: Sequence[Any], bad: Callable[[Document, str, str], None]) -> dict[str, int]:
    """A queue's or a cohort's resourceGroups against the flavors and pools: each flavor known and
    in one group, quota only for what its pool offers, each resource in one group. The flavors
    seen, with their group."""
    seen_flavors: dict[str, int] = {}
    for g, group in enumerate(groups):
        for f, fq in enumerate(group.flavors):
            path = f"spec.resourceGroups.{g}.flavors.{f}"
            if fq.name in seen_flavors and seen_flavors[fq.name] != g:
                bad(obj, f"{path}.name", f"flavor {fq.name!r} is already in resource group {seen_flavors[fq.name]}")
            seen_flavors[fq.name] = g
            if fq.name not in cfg.flavors:
                bad(obj, f"{path}.name", f"unknown flavor {fq.name!r}")
                continue
            pool_name = cfg.flavors[fq.name].spec.pool
            pool = cfg.pools.get(pool_name)
            if pool is None:
                continue
            for r, rq in enumerate(fq.resources):
                if rq.nominal_quota and not pool.spec.offers(rq.name):
                    bad(obj, f"{path}.resources.{r}.name", f"quota for {rq.name} but pool {pool_name!r} (flavor {fq.name!r}) offers no {rq.name}")
    covered = [r for group in groups for r in group.covered_resources]
    for r in sorted({r for r in covered if covered.count(r) > 1}):
        bad(obj, "spec.resourceGroups", f"resource {r} is covered by more than one resource group")
    return seen_flavors


def cross_check(cfg: PlatformConfig) -> list[FieldProblem]:
    """References between documents: every problem found, in a stable order."""
    out: list[FieldProblem] = []

    def bad(obj: Document, fld: str, problem: str) -> None:
        out.append(FieldProblem(field=fld, problem=problem, file=cfg.sources.get(obj.ref()), document=obj.ref()))

    for fl in cfg.flavors.values():
        if fl.spec.pool not in cfg.pools:
            bad(fl, "spec.pool", f"unknown pool {fl.spec.pool!r}")
    for cc in cfg.compute_classes.values():
        for i, step in enumerate(cc.spec.flavors):
            if step.flavor not in cfg.flavors:
                bad(cc, f"spec.flavors.{i}.flavor", f"unknown flavor {step.flavor!r}")
            elif step.wait_for_capacity is None and i != len(cc.spec.flavors) - 1:
                bad(cc, f"spec.flavors.{i}.waitForCapacity", "only the last step may wait indefinitely; give a wait time")
    for co in cfg.cohorts.values():
        if co.spec.parent is not None and co.spec.parent not in cfg.cohorts:
            bad(co, "spec.parent", f"unknown cohort {co.spec.parent!r}")
        _check_resource_groups(cfg, co, co.spec.resource_groups, bad)
        if co.spec.parent is None:   # (Kueue: "must be nil when parent is empty")
            for g, group in enumerate(co.spec.resource_groups):
                for f, fq in enumerate(group.flavors):
                    for r, rq in enumerate(fq.resources):
                        if rq.borrowing_limit is not None:
                            bad(co, f"spec.resourceGroups.{g}.flavors.{f}.resources.{r}.borrowingLimit",
                                "a cohort without a parent has nothing to borrow from: give spec.parent or drop the limit")
    # cohort cycles
    for co in cfg.cohorts.values():
        seen = [co.name]
        cur = co.spec.parent
        while cur is not None and cur in cfg.cohorts:
            if cur in seen:
                if cur == co.name:
                    bad(co, "spec.parent", "cohort cycle: " + " -> ".join([*seen, cur]))
                break
            seen.append(cur)
            cur = cfg.cohorts[cur].spec.parent
    defaults = [pc.name for pc in cfg.priority_classes.values() if pc.spec.default]
    for pc_name in defaults[1:]:
        bad(cfg.priority_classes[pc_name], "spec.default", f"only one priority class may be the default (also: {defaults[0]})")
    for q in cfg.queues.values():
        if q.spec.team not in cfg.teams:
            bad(q, "spec.team", f"unknown team {q.spec.team!r}")
        if q.spec.cohort is not None and q.spec.cohort not in cfg.cohorts:
            bad(q, "spec.cohort", f"unknown cohort {q.spec.cohort!r}")
        seen_flavors = _check_resource_groups(cfg, q, q.spec.resource_groups, bad)
        if q.spec.compute_class is not None:
            cc = cfg.compute_classes.get(q.spec.compute_class)
            if cc is None:
                bad(q, "spec.computeClass", f"unknown compute class {q.spec.compute_class!r}")
            else:
                for step in cc.spec.flavors:
                    if step.flavor in cfg.flavors and step.flavor not in seen_flavors:
                        bad(q, "spec.computeClass", f"compute class {cc.name!r} uses flavor {step.flavor!r} that the queue has no quota on")
        quotas = q.spec.quotas()
        for w, window in enumerate(q.spec.quota_schedule):
            for s, sq in enumerate(window.quotas):
                if (sq.flavor, sq.resource) not in quotas:
                    bad(q, f"spec.quotaSchedule.{w}.quotas.{s}", f"the queue has no quota for {sq.resource} on flavor {sq.flavor!r} to change")
            try:
                import zoneinfo

                zoneinfo.ZoneInfo(window.timezone)
            except Exception:
                bad(q, f"spec.quotaSchedule.{w}.timezone", f"unknown time zone {window.timezone!r}")
    for cluster in cfg.clusters.values() or ([cfg.cluster] if cfg.cluster else []):
        for i, p in enumerate(cluster.spec.pools):
            if p not in cfg.pools:
                bad(cluster, f"spec.pools.{i}", f"unknown pool {p!r}")
    return out


def default_config_path() -> Path:
    """``cluster_configs/local.yaml`` of a source checkout (the embedded default)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "cluster_configs" / "local.yaml"
        if candidate.exists():
            return candidate
    return Path("cluster_configs/local.yaml")
