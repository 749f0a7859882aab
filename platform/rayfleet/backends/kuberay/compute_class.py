"""rayfleet compute classes -> GKE ``ComputeClass`` (``cloud.google.com/v1``).

Each step of a rayfleet compute class (a flavor, hence a pool) becomes one priority, in order:

==================  ===================================================================
pool provisioning   priority
==================  ===================================================================
reservation         ``reservations: {affinity: Specific, specific: [{name, project}]}``
dws-calendar        ``reservations: {affinity: Specific, specific: [{name, project}]}``: the
                    reservation Compute Engine creates for the calendar request, which exists
                    only inside the window (a step without ``reservationName`` is refused:
                    ``AnyBestEffort`` would let GKE make on-demand nodes outside the window)
dws-flex            ``flexStart: {enabled: true, nodeRecycling: {leadTimeSeconds}}`` with
                    ``maxRunDurationSeconds``; node recycling when the class asks for it
spot                ``spot: true``
on-demand           ``spot: false``
==================  ===================================================================

plus the machine type, the accelerator (``gpu: {type, count}`` or ``tpu: {type, count, topology}``)
and the pool's zone. ``whenUnsatisfiable: DoNotScaleUp`` keeps GKE from falling back to anything
outside the class; ``nodePoolAutoCreation`` lets GKE create the node pool of a priority;
``activeMigration.optimizeRulePriority`` is the class's ``activeMigration.optimizeRulePriority``
(GKE then moves workloads to a preferred priority's new nodes when it can).

What GKE cannot express: rayfleet's per-step ``waitForCapacity`` (GKE moves to the next priority
when a priority's capacity is unavailable, it has no per-priority timeout). The wait times are kept
in the ``rayfleet.io/wait-for-capacity`` annotation for reference; rayfleet enforces them itself.
"""

from __future__ import annotations

import json
from typing import Any

from ...api import ComputeClass, PoolSpec
from ...api.pool import (
    DwsCalendarProvisioning,
    DwsFlexProvisioning,
    OnDemandProvisioning,
    ReservationProvisioning,
    SpotProvisioning,
)
from ...config import PlatformConfig
from .manifests import LABEL_CLUSTER, MANAGED_BY, cluster_kuberay

API_VERSION = "cloud.google.com/v1"
ANN_WAIT = "rayfleet.io/wait-for-capacity"


def priority_for(pool: str, spec: PoolSpec, *, node_recycling: bool) -> dict[str, Any]:
    """One ComputeClass priority rule for a pool."""
    rule: dict[str, Any] = {"machineType": spec.machine_type}
    acc = spec.accelerator
    if acc is not None and acc.is_tpu:
        assert spec.tpu_topology is not None
        rule["tpu"] = {"type": acc.value, "count": spec.accelerators_per_host, "topology": spec.tpu_topology}
    elif acc is not None:
        rule["gpu"] = {"type": acc.value, "count": spec.accelerators_per_host}
    prov = spec.provisioning
    if isinstance(prov, ReservationProvisioning) and prov.affinity == "any":
        rule["reservations"] = {"affinity": "AnyBestEffort"}
    elif isinstance(prov, ReservationProvisioning):
        specific: dict[str, Any] = {"name": prov.reservation_name}
        if prov.reservation_project:
            specific["project"] = prov.reservation_project
        rule["reservations"] = {"affinity": "Specific", "specific": [specific]}
    elif isinstance(prov, DwsCalendarProvisioning):
        if not prov.reservation_name:
            raise ValueError(
                f"pool {pool!r}: a dws-calendar compute-class step needs provisioning.reservationName (the calendar request's reservation)"
            )
        cal: dict[str, Any] = {"name": prov.reservation_name}
        if prov.reservation_project:
            cal["project"] = prov.reservation_project
        rule["reservations"] = {"affinity": "Specific", "specific": [cal]}
    elif isinstance(prov, DwsFlexProvisioning):
        flex: dict[str, Any] = {"enabled": True}
        if node_recycling:
            if prov.node_recycling_lead_time is None:
                raise ValueError(
                    f"pool {pool!r}: the compute class asks for node recycling but the pool's provisioning has no nodeRecyclingLeadTime"
                )
            flex["nodeRecycling"] = {"leadTimeSeconds": int(prov.node_recycling_lead_time)}
        rule["flexStart"] = flex
        rule["maxRunDurationSeconds"] = int(prov.max_run_duration)
    elif isinstance(prov, SpotProvisioning):
        rule["spot"] = True
    elif isinstance(prov, OnDemandProvisioning):
        rule["spot"] = False
    if spec.zone:
        rule["location"] = {"zones": [spec.zone]}
    return rule


def compute_class_object(cc: ComputeClass, cfg: PlatformConfig) -> dict[str, Any]:
    """The GKE ComputeClass of a rayfleet compute class."""
    if cc.name.startswith(("gke", "autopilot")):
        raise ValueError(f"compute class {cc.name!r}: GKE reserves names beginning with 'gke' or 'autopilot'")
    cluster, _ = cluster_kuberay(cfg)
    priorities = []
    waits: dict[str, str] = {}
    for step in cc.spec.flavors:
        pool = cfg.flavors[step.flavor].spec.pool
        priorities.append(priority_for(pool, cfg.pools[pool].spec, node_recycling=cc.spec.node_recycling))
        waits[step.flavor] = "indefinitely" if step.wait_for_capacity is None else f"{int(step.wait_for_capacity)}s"
    order = " -> ".join(step.flavor for step in cc.spec.flavors)
    return {
        "apiVersion": API_VERSION,
        "kind": "ComputeClass",
        "metadata": {
            "name": cc.name,
            "labels": {MANAGED_BY: "rayfleet", LABEL_CLUSTER: cluster},
            "annotations": {ANN_WAIT: json.dumps(waits)},
        },
        "spec": {
            "description": f"rayfleet compute class {cc.name}: {order}",
            "priorities": priorities,
            "nodePoolAutoCreation": {"enabled": True},
            "activeMigration": {"optimizeRulePriority": cc.spec.active_migration.optimize_rule_priority},
            "whenUnsatisfiable": "DoNotScaleUp",
        },
    }


def compute_classes(cfg: PlatformConfig) -> list[dict[str, Any]]:
    return [compute_class_object(cc, cfg) for cc in cfg.compute_classes.values()]
