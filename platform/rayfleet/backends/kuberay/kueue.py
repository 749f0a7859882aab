"""rayfleet quota -> Kueue ``v1beta2`` objects, for platform teams that also run Kueue.

=====================  =====================================================================
rayfleet               Kueue
=====================  =====================================================================
Flavor                 ResourceFlavor: the pool's GKE node labels as ``nodeLabels`` (plus the
                       flavor's own), the pool's tolerations as ``tolerations``
Queue                  ClusterQueue (``cohortName``, nominal/borrowing/lending quota per flavor and
                       resource, preemption, flavor fungibility, fair-sharing weight, queueing
                       strategy) restricted to the team's namespace, and a LocalQueue of the same
                       name in that namespace
Cohort                 Cohort (``parentName``, the cohort's own ``resourceGroups`` with borrowing and
                       lending limits, fair-sharing weight)
PriorityClass          WorkloadPriorityClass
queued DWS pool        ProvisioningRequestConfig + AdmissionCheck ``dws-<pool>``, applied to the
                       pool's flavors through ``admissionChecksStrategy``
=====================  =====================================================================

Not expressible in Kueue, enforced by rayfleet only: ``quotaSchedule`` time windows, the default
priority class, an on-demand flavor's exclusion of spot/flex/reserved nodes (Kueue node labels are
equalities). :func:`not_exported` lists what a config loses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...api import Cohort, Flavor, PriorityClass, Queue
from ...api.base import format_quantity
from ...api.pool import DwsFlexProvisioning, OnDemandProvisioning
from ...api.queue import WhenCanBorrow, WhenCanPreempt
from ...config import PlatformConfig
from .manifests import (
    LABEL_CLUSTER,
    MANAGED_BY,
    PROVREQ_CLASS_QUEUED,
    cluster_kuberay,
    is_queued_dws,
    pool_placement,
)

API_VERSION = "kueue.x-k8s.io/v1beta2"
PROVREQ_CONTROLLER = "kueue.x-k8s.io/provisioning-request"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _labels(cfg: PlatformConfig) -> dict[str, str]:
    cluster, _ = cluster_kuberay(cfg)
    return {MANAGED_BY: "rayfleet", LABEL_CLUSTER: cluster}


def team_namespace(cfg: PlatformConfig, team: str) -> str:
    t = cfg.teams.get(team)
    return (t.spec.namespace if t is not None else None) or team


def _weight(value: float) -> int | str:
    """A fair-sharing weight as a Kubernetes quantity."""
    if value == int(value):
        return int(value)
    return f"{round(value * 1000)}m"


def resource_flavor(flavor: Flavor, cfg: PlatformConfig) -> dict[str, Any]:
    spec = cfg.pools[flavor.spec.pool].spec
    placement = pool_placement(spec)
    node_labels = {**placement.node_selector, **flavor.spec.node_labels}
    out_spec: dict[str, Any] = {"nodeLabels": node_labels}
    if placement.tolerations:
        out_spec["tolerations"] = [dict(t) for t in placement.tolerations]
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": flavor.name, "labels": {**_labels(cfg), "rayfleet.io/pool": flavor.spec.pool}},
        "spec": out_spec,
    }


def dws_check_name(pool: str) -> str:
    return f"dws-{pool}"


def _dws_flavors(q: Queue, cfg: PlatformConfig) -> dict[str, list[str]]:
    """pool -> flavors of ``q`` on queued DWS flex-start pools."""
    out: dict[str, list[str]] = {}
    for name in q.spec.flavor_order():
        pool = cfg.flavors[name].spec.pool
        if is_queued_dws(cfg.pools[pool].spec):
            out.setdefault(pool, []).append(name)
    return out


def _resource_groups(doc: Queue | Cohort, groups: Sequence[Any], has_parent: bool) -> list[dict[str, Any]]:
    """Kueue ``resourceGroups`` (the same shape in a ClusterQueue and a Cohort), quantities as
    Kubernetes quantities; a borrowing limit only where there is a parent to borrow from."""
    out = []
    for g, group in enumerate(groups):
        flavors = []
        for f, fq in enumerate(group.flavors):
            resources = []
            for r, rq in enumerate(fq.resources):
                entry: dict[str, Any] = {"name": rq.name, "nominalQuota": format_quantity(rq.name, rq.nominal_quota)}
                if rq.borrowing_limit is not None:
                    if not has_parent:
                        raise ValueError(
                            f"{doc.KIND}/{doc.name}: spec.resourceGroups.{g}.flavors.{f}.resources.{r}.borrowingLimit: "
                            f"Kueue allows a borrowing limit only in a {'cohort' if isinstance(doc, Queue) else 'cohort with a parent'}"
                        )
                    entry["borrowingLimit"] = format_quantity(rq.name, rq.borrowing_limit)
                if rq.lending_limit is not None:
                    entry["lendingLimit"] = format_quantity(rq.name, rq.lending_limit)
                resources.append(entry)
            flavors.append({"name": fq.name, "resources": resources})
        out.append({"coveredResources": list(group.covered_resources), "flavors": flavors})
    return out


def cluster_queue(q: Queue, cfg: PlatformConfig) -> dict[str, Any]:
    s = q.spec
    groups = _resource_groups(q, s.resource_groups, s.cohort is not None)
    pre = s.preemption
    bwc: dict[str, Any] = {"policy": pre.borrow_within_cohort.policy.value}
    if pre.borrow_within_cohort.max_priority_threshold is not None:
        bwc["maxPriorityThreshold"] = pre.borrow_within_cohort.max_priority_threshold
    if pre.reclaim_within_cohort.value == "Never" and bwc["policy"] != "Never":
        raise ValueError(f"Queue/{q.name}: spec.preemption: Kueue rejects borrowWithinCohort without reclaimWithinCohort")
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: team_namespace(cfg, s.team)}},
        "queueingStrategy": s.queueing_strategy.value,
        "resourceGroups": groups,
        "preemption": {
            "withinClusterQueue": pre.within_cluster_queue.value,
            "reclaimWithinCohort": pre.reclaim_within_cohort.value,
            "borrowWithinCohort": bwc,
        },
        "flavorFungibility": {
            "whenCanBorrow": "MayStopSearch" if s.flavor_fungibility.when_can_borrow == WhenCanBorrow.BORROW else "TryNextFlavor",
            "whenCanPreempt": "MayStopSearch" if s.flavor_fungibility.when_can_preempt == WhenCanPreempt.PREEMPT else "TryNextFlavor",
        },
        "fairSharing": {"weight": _weight(s.fair_sharing.weight)},
    }
    if s.flavor_fungibility.preference is not None:
        spec["flavorFungibility"]["preference"] = s.flavor_fungibility.preference.value
    if s.cohort is not None:
        spec["cohortName"] = s.cohort
    dws = _dws_flavors(q, cfg)
    if dws:
        spec["admissionChecksStrategy"] = {
            "admissionChecks": [{"name": dws_check_name(pool), "onFlavors": flavors} for pool, flavors in sorted(dws.items())]
        }
    labels = {**_labels(cfg), "rayfleet.io/team": s.team}
    return {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": {"name": q.name, "labels": labels}, "spec": spec}


def local_queue(q: Queue, cfg: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": q.name, "namespace": team_namespace(cfg, q.spec.team), "labels": {**_labels(cfg), "rayfleet.io/team": q.spec.team}},
        "spec": {"clusterQueue": q.name},
    }


def cohort(co: Cohort, cfg: PlatformConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {"fairSharing": {"weight": _weight(co.spec.fair_sharing.weight)}}
    if co.spec.parent is not None:
        spec["parentName"] = co.spec.parent
    if co.spec.resource_groups:
        spec["resourceGroups"] = _resource_groups(co, co.spec.resource_groups, co.spec.parent is not None)
    return {"apiVersion": API_VERSION, "kind": "Cohort", "metadata": {"name": co.name, "labels": _labels(cfg)}, "spec": spec}


def workload_priority_class(pc: PriorityClass, cfg: PlatformConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "WorkloadPriorityClass",
        "metadata": {"name": pc.name, "labels": _labels(cfg)},
        "value": pc.spec.value,
    }
    if pc.spec.description:
        out["description"] = pc.spec.description
    return out


def dws_admission_objects(pool: str, cfg: PlatformConfig) -> list[dict[str, Any]]:
    """ProvisioningRequestConfig + AdmissionCheck through which Kueue asks GKE for a queued
    flex-start ProvisioningRequest before admitting a workload on the pool's flavors."""
    spec = cfg.pools[pool].spec
    prov = spec.provisioning
    assert isinstance(prov, DwsFlexProvisioning) and spec.accelerator is not None
    name = dws_check_name(pool)
    labels = {**_labels(cfg), "rayfleet.io/pool": pool}
    config = {
        "apiVersion": API_VERSION,
        "kind": "ProvisioningRequestConfig",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "provisioningClassName": PROVREQ_CLASS_QUEUED,
            "managedResources": [spec.accelerator.resource],
            "parameters": {"maxRunDurationSeconds": str(int(prov.max_run_duration))},
            "podSetUpdates": {
                "nodeSelector": [{"key": "autoscaling.gke.io/provisioning-request", "valueFromProvisioningClassDetail": "ResizeRequestName"}]
            },
        },
    }
    check = {
        "apiVersion": API_VERSION,
        "kind": "AdmissionCheck",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "controllerName": PROVREQ_CONTROLLER,
            "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "ProvisioningRequestConfig", "name": name},
        },
    }
    return [config, check]


def namespaces(cfg: PlatformConfig) -> list[dict[str, Any]]:
    """The fleet namespace and every team namespace a LocalQueue lives in."""
    _, kuberay = cluster_kuberay(cfg)
    names = [kuberay.namespace] + [team_namespace(cfg, q.spec.team) for q in cfg.queues.values()]
    out = []
    for ns in dict.fromkeys(names):
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": _labels(cfg)}})
    return out


def kueue_objects(cfg: PlatformConfig) -> list[dict[str, Any]]:
    """Every Kueue object of a config, in apply order (cluster-scoped first)."""
    out: list[dict[str, Any]] = [workload_priority_class(pc, cfg) for pc in cfg.priority_classes.values()]
    out += [cohort(co, cfg) for co in cfg.cohorts.values()]
    out += [resource_flavor(f, cfg) for f in cfg.flavors.values()]
    dws_pools = sorted({p for q in cfg.queues.values() for p in _dws_flavors(q, cfg)})
    for pool in dws_pools:
        out += dws_admission_objects(pool, cfg)
    out += [cluster_queue(q, cfg) for q in cfg.queues.values()]
    out += [local_queue(q, cfg) for q in cfg.queues.values()]
    return out


def not_exported(cfg: PlatformConfig) -> list[str]:
    """What of the config Kueue cannot hold (rayfleet still enforces it)."""
    notes = []
    for q in cfg.queues.values():
        if q.spec.quota_schedule:
            windows = ", ".join(w.name for w in q.spec.quota_schedule)
            notes.append(f"Queue/{q.name}: quotaSchedule ({windows}) has no Kueue equivalent; the ClusterQueue holds the base quota")
    for pc in cfg.priority_classes.values():
        if pc.spec.default:
            notes.append(f"PriorityClass/{pc.name}: Kueue has no default WorkloadPriorityClass; label workloads with kueue.x-k8s.io/priority-class")
    for f in cfg.flavors.values():
        if isinstance(cfg.pools[f.spec.pool].spec.provisioning, OnDemandProvisioning):
            notes.append(
                f"Flavor/{f.name}: on-demand; Kueue node labels cannot exclude spot/flex-start/reserved nodes of the same machine type "
                "(rayfleet's own RayJobs carry a node affinity that does)"
            )
    if cfg.cluster is not None and cfg.cluster.spec.fair_sharing:
        strategies = ", ".join(s.value for s in cfg.cluster.spec.fair_sharing_strategies)
        notes.append(f"Cluster/{cfg.cluster.name}: fairSharing (preemptionStrategies {strategies}) is Kueue's controller configuration "
                     "(fairSharing.enable, fairSharing.preemptionStrategies), not an object: set it there")
    return notes
