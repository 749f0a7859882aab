"""Kueue objects -> rayfleet documents: ``rayfleet config import-kueue``, the inverse of :mod:`.kueue`.

=======================  ====================================================================
Kueue                    rayfleet
=======================  ====================================================================
ClusterQueue             Queue: ``cohortName`` (v1beta1 ``cohort``), ``resourceGroups`` with nominal,
                         borrowing and lending quota, ``preemption``, ``flavorFungibility``
                         (``MayStopSearch`` -> Borrow / Preempt), ``fairSharing.weight``,
                         ``queueingStrategy``. The owning team: the ``rayfleet.io/team`` label (what
                         rayfleet's export writes), else the namespace of its LocalQueue, else the
                         namespace its ``namespaceSelector`` names, else the queue's name.
Cohort                   Cohort: ``parentName`` (v1beta1 ``parent``), ``resourceGroups``, weight; a
                         cohort only named (by a ClusterQueue or as a parent) gets a document too
ResourceFlavor           Flavor: its pool is the ``rayfleet.io/pool`` label, else the
                         ``cloud.google.com/gke-nodepool`` node label, else the flavor's name; node
                         labels the pool puts on its hosts anyway are dropped when the pools are known
WorkloadPriorityClass    PriorityClass (``value``, ``description``)
LocalQueue               Team (its namespace)
=======================  ====================================================================

Kueue has no node pools: rayfleet's Pool documents (machine type, accelerators, provisioning) are
written by hand, or kept from an existing config (``--pools``). What rayfleet cannot hold
(resources other than cpu, memory, GPUs and TPUs; admission checks, which rayfleet derives from its
pools; stop policies; tolerations, which come from the pool) is listed in the notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ...api import RESOURCE_NAMES, Pool
from ...errors import FieldProblem, SpecError
from .manifests import pool_placement

GROUP = "kueue.x-k8s.io"
TEAM_LABEL = "rayfleet.io/team"
POOL_LABEL = "rayfleet.io/pool"
NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
KINDS = ("ClusterQueue", "Cohort", "ResourceFlavor", "WorkloadPriorityClass", "LocalQueue")
#: Kueue objects rayfleet's export writes that the import reads no quota from (rayfleet derives them).
DERIVED = ("AdmissionCheck", "ProvisioningRequestConfig")



@dataclass
class Imported:
    docs: list[dict[str, Any]] = field(default_factory=list)   # rayfleet documents, in config order
    notes: list[str] = field(default_factory=list)


def _weight(value: Any) -> float:
    """A fair-sharing weight, a Kubernetes quantity ("500m", 2)."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _ref(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def _groups(obj: dict[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    """``resourceGroups`` as rayfleet reads them: resources it knows, quantities as written."""
    out = []
    for g, group in enumerate((obj.get("spec") or {}).get("resourceGroups") or []):
        covered = [r for r in group.get("coveredResources") or [] if r in RESOURCE_NAMES]
        dropped = [r for r in group.get("coveredResources") or [] if r not in RESOURCE_NAMES]
        if dropped:
            notes.append(f"{_ref(obj)}: spec.resourceGroups.{g}: {', '.join(dropped)} not imported (rayfleet's quota covers "
                         f"{', '.join(RESOURCE_NAMES)})")
        if not covered:
            continue
        flavors = [{"name": f.get("name"),
                    "resources": [{k: v for k, v in r.items() if k in ("name", "nominalQuota", "borrowingLimit", "lendingLimit")}
                                  for r in f.get("resources") or [] if r.get("name") in covered]}
                   for f in group.get("flavors") or []]
        out.append({"coveredResources": covered, "flavors": flavors})
    return out


def _fungibility(ff: dict[str, Any]) -> dict[str, Any]:
    """Kueue's ``MayStopSearch`` (v1beta1: ``Borrow`` / ``Preempt``) is rayfleet's ``Borrow`` / ``Preempt``."""
    borrow = ff.get("whenCanBorrow", "MayStopSearch")
    preempt = ff.get("whenCanPreempt", "TryNextFlavor")
    out = {"whenCanBorrow": "Borrow" if borrow == "MayStopSearch" else borrow,
           "whenCanPreempt": "Preempt" if preempt == "MayStopSearch" else preempt}
    if ff.get("preference"):
        out["preference"] = ff["preference"]
    return out


def _cluster_queue(obj: dict[str, Any], team: str, notes: list[str]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    out: dict[str, Any] = {"team": team}
    cohort = spec.get("cohortName", spec.get("cohort"))
    if cohort:
        out["cohort"] = cohort
    out["resourceGroups"] = _groups(obj, notes)
    if spec.get("queueingStrategy"):
        out["queueingStrategy"] = spec["queueingStrategy"]
    pre = spec.get("preemption") or {}
    if pre:
        out["preemption"] = {k: pre[k] for k in ("withinClusterQueue", "reclaimWithinCohort") if k in pre}
        bwc = pre.get("borrowWithinCohort")
        if bwc:
            out["preemption"]["borrowWithinCohort"] = {k: bwc[k] for k in ("policy", "maxPriorityThreshold") if k in bwc}
    if spec.get("flavorFungibility"):
        out["flavorFungibility"] = _fungibility(spec["flavorFungibility"])
    if (spec.get("fairSharing") or {}).get("weight") is not None:
        out["fairSharing"] = {"weight": _weight(spec["fairSharing"]["weight"])}
    for key, why in (("admissionChecks", "rayfleet adds DWS admission checks from its pools"),
                     ("admissionChecksStrategy", "rayfleet adds DWS admission checks from its pools"),
                     ("stopPolicy", "rayfleet has no stop policy on a queue"),
                     ("admissionScope", "rayfleet orders a queue by priority and creation time")):
        if key in spec:
            notes.append(f"{_ref(obj)}: spec.{key} not imported ({why})")
    return {"kind": "Queue", "metadata": {"name": obj["metadata"]["name"]}, "spec": out}


def _cohort(obj: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    out: dict[str, Any] = {}
    parent = spec.get("parentName", spec.get("parent"))
    if parent:
        out["parent"] = parent
    groups = _groups(obj, notes)
    if groups:
        out["resourceGroups"] = groups
    if (spec.get("fairSharing") or {}).get("weight") is not None:
        out["fairSharing"] = {"weight": _weight(spec["fairSharing"]["weight"])}
    return {"kind": "Cohort", "metadata": {"name": obj["metadata"]["name"]}, "spec": out}


def _flavor(obj: dict[str, Any], pools: dict[str, Pool], notes: list[str]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    labels = dict(spec.get("nodeLabels") or {})
    meta_labels = (obj.get("metadata") or {}).get("labels") or {}
    pool = meta_labels.get(POOL_LABEL) or labels.get(NODEPOOL_LABEL) or obj["metadata"]["name"]
    if pool in pools:
        own = pool_placement(pools[pool].spec).node_selector
        labels = {k: v for k, v in labels.items() if own.get(k) != v}
    else:
        notes.append(f"{_ref(obj)}: pool {pool!r} must be defined (a Pool document: Kueue has no node pools)")
    if spec.get("tolerations"):
        notes.append(f"{_ref(obj)}: spec.tolerations not imported (a rayfleet flavor's hosts are tolerated as its pool says)")
    if spec.get("topologyName"):
        notes.append(f"{_ref(obj)}: spec.topologyName not imported (topology-aware scheduling is not modelled)")
    out: dict[str, Any] = {"pool": pool}
    if labels:
        out["nodeLabels"] = labels
    return {"kind": "Flavor", "metadata": {"name": obj["metadata"]["name"]}, "spec": out}


def _priority_class(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"value": obj.get("value")}
    if obj.get("description"):
        out["description"] = obj["description"]
    return {"kind": "PriorityClass", "metadata": {"name": obj["metadata"]["name"]}, "spec": out}


def _team(name: str, namespace: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": "Team", "metadata": {"name": name}}
    if namespace and namespace != name:
        doc["spec"] = {"namespace": namespace}
    return doc


def from_kueue(objects: Iterable[tuple[str, dict[str, Any]]], pools: Iterable[Pool] = ()) -> Imported:
    """``objects``: (file, Kueue object) pairs; ``pools``: the rayfleet pools the flavors stand
    for, where known. Raises SpecError naming the file, object and field of anything malformed."""
    pools_by_name = {p.name: p for p in pools}
    result = Imported()
    problems: list[FieldProblem] = []
    by_kind: dict[str, list[tuple[str, dict[str, Any]]]] = {k: [] for k in KINDS}
    for file, obj in objects:
        if not isinstance(obj, dict):
            problems.append(FieldProblem("(document)", "not a Kubernetes object (a mapping)", file=file))
            continue
        kind, api = obj.get("kind"), str(obj.get("apiVersion", ""))
        if kind in DERIVED:
            continue
        if kind not in KINDS or not api.startswith(GROUP + "/"):
            problems.append(FieldProblem("kind", f"not a Kueue object rayfleet imports ({', '.join(KINDS)} of {GROUP}): "
                                                 f"{api or '?'} {kind or '?'}", file=file, document=_ref(obj)))
            continue
        if not isinstance((obj.get("metadata") or {}).get("name"), str):
            problems.append(FieldProblem("metadata.name", "missing", file=file, document=_ref(obj)))
            continue
        by_kind[kind].append((file, obj))
    if problems:
        raise SpecError(problems)
    namespaces: dict[str, set[str]] = {}    # cluster queue -> namespaces of its LocalQueues
    for _, lq in by_kind["LocalQueue"]:
        cq = (lq.get("spec") or {}).get("clusterQueue")
        ns = (lq.get("metadata") or {}).get("namespace")
        if cq and ns:
            namespaces.setdefault(cq, set()).add(ns)
    teams: dict[str, str | None] = {}
    for _, obj in by_kind["WorkloadPriorityClass"]:
        result.docs.append(_priority_class(obj))
    for _, obj in by_kind["Cohort"]:
        result.docs.append(_cohort(obj, result.notes))
    for _, obj in by_kind["ResourceFlavor"]:
        result.docs.append(_flavor(obj, pools_by_name, result.notes))
    queues = []
    for _, obj in by_kind["ClusterQueue"]:
        name = obj["metadata"]["name"]
        selector = (((obj.get("spec") or {}).get("namespaceSelector") or {}).get("matchLabels") or {}).get(NAMESPACE_NAME_LABEL)
        ns_all = sorted(namespaces.get(name, ()))
        namespace = ns_all[0] if ns_all else selector
        team = ((obj.get("metadata") or {}).get("labels") or {}).get(TEAM_LABEL) or namespace or name
        if len(ns_all) > 1:
            result.notes.append(f"{_ref(obj)}: LocalQueues in {', '.join(ns_all)}; a rayfleet queue belongs to one team: {team!r}")
        teams.setdefault(team, namespace)
        queues.append(_cluster_queue(obj, team, result.notes))
    # Kueue makes a cohort by naming it (in a ClusterQueue's cohortName, a Cohort's parentName);
    # rayfleet wants its document: one without quota of its own for each name no Cohort object has
    have = {d["metadata"]["name"] for d in result.docs if d["kind"] == "Cohort"}
    named = {q["spec"]["cohort"] for q in queues if q["spec"].get("cohort")}
    named |= {d["spec"]["parent"] for d in result.docs if d["kind"] == "Cohort" and d["spec"].get("parent")}
    result.docs[:0] = [{"kind": "Cohort", "metadata": {"name": c}} for c in sorted(named - have)]
    result.docs += [_team(t, ns) for t, ns in sorted(teams.items())] + queues
    return result
