"""Kubernetes Nodes as rayfleet hosts (pure: Node objects in, :class:`HostInfo` out).

A node belongs to the pool whose pod placement it satisfies (:func:`.manifests.pool_placement`:
the node selector's labels and the node affinity's expressions); where several pools match, the
one whose selector names the most labels wins (a spot node also has the accelerator and machine
type a calendar pool selects). Nodes of no pool (system nodes) are not hosts.

Phase, first rule that applies:

==================================================================  ===========
node                                                                phase
==================================================================  ===========
taint ``cloud.google.com/impending-node-termination`` (GKE: spot     DRAINING
preemption or the VM's end) or ``ToBeDeletedByClusterAutoscaler``
``spec.unschedulable`` and Ready                                     CORDONED
``spec.unschedulable`` and not Ready (GKE auto-repair drains first)  REPAIRING
no Ready condition, or not Ready since it registered                 PROVISIONING
not Ready after it was once                                          REPAIRING
otherwise                                                            READY
==================================================================  ===========

``healthy`` is False when Ready is not True or a node-problem-detector condition GKE runs
(``KernelDeadlock``, ``ReadonlyFilesystem``, ``Frequent*Restart``, ``CorruptDockerOverlay2``) is
True. ``expires_at``: the impending-termination taint's time plus the notice (spot: the pool's
``reclaimNotice``; else Kubernetes' default 30 s grace), a flex-start node's creation plus its
``cloud.google.com/gke-max-run-duration-seconds`` label (or the pool's ``maxRunDuration``), a calendar
node's window end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...api import PoolSpec
from ...api.pool import DwsCalendarProvisioning, DwsFlexProvisioning, SpotProvisioning
from ..base import HostInfo, HostPhase, Notice, NoticeKind
from .manifests import GKE_MAX_RUN_DURATION, Placement, pool_placement

TAINT_IMPENDING_TERMINATION = "cloud.google.com/impending-node-termination"
TAINT_AUTOSCALER_DELETE = "ToBeDeletedByClusterAutoscaler"
NODE_PROBLEMS = ("KernelDeadlock", "ReadonlyFilesystem", "FrequentKubeletRestart", "FrequentDockerRestart",
                 "FrequentContainerdRestart", "CorruptDockerOverlay2")
#: rayfleet's cordon: why, and when (RFC 3339).
ANN_CORDONED = "rayfleet.io/cordoned"
ANN_CORDONED_AT = "rayfleet.io/cordoned-at"
#: Kubernetes' default terminationGracePeriodSeconds: the notice a node going away gives its pods.
DEFAULT_GRACE_SECONDS = 30.0
#: A node not Ready within this long of its creation has never been Ready: still provisioning.
REGISTER_WINDOW_SECONDS = 60.0


def epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- pool membership


def _expression_holds(labels: dict[str, str], expr: dict[str, Any]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def placement_matches(labels: dict[str, str], placement: Placement) -> bool:
    """Whether a node with ``labels`` satisfies a pool's node selector and required node affinity."""
    if any(labels.get(k) != v for k, v in placement.node_selector.items()):
        return False
    required = ((placement.affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(all(_expression_holds(labels, e) for e in t.get("matchExpressions") or []) for t in terms):
        return False
    return True


def node_pool(node: dict[str, Any], pools: dict[str, PoolSpec]) -> str | None:
    """The pool a node belongs to (the most specific match), or None."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    best: tuple[int, str] | None = None
    for name, spec in pools.items():
        placement = pool_placement(spec)
        if placement_matches(labels, placement):
            score = len(placement.node_selector)
            if best is None or score > best[0]:
                best = (score, name)
    return best[1] if best else None


# ---------------------------------------------------------------- phase


def _conditions(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in (node.get("status") or {}).get("conditions") or []}


def _expiry(node: dict[str, Any], spec: PoolSpec) -> float | None:
    meta = node.get("metadata") or {}
    prov = spec.provisioning
    if isinstance(prov, DwsCalendarProvisioning):
        return prov.window.end.timestamp()
    created = epoch(meta.get("creationTimestamp"))
    label = (meta.get("labels") or {}).get(GKE_MAX_RUN_DURATION)
    if created is not None and label and label.isdigit():
        return created + int(label)
    if created is not None and isinstance(prov, DwsFlexProvisioning):
        return created + prov.max_run_duration
    return None


def node_host(node: dict[str, Any], pool: str, spec: PoolSpec) -> HostInfo:
    """One node of ``pool`` as a host."""
    meta = node.get("metadata") or {}
    name = meta.get("name", "")
    conds = _conditions(node)
    ready = conds.get("Ready") or {}
    is_ready = ready.get("status") == "True"
    problems = [t for t in NODE_PROBLEMS if (conds.get(t) or {}).get("status") == "True"]
    healthy = is_ready and not problems
    expires = _expiry(node, spec)
    taints = {t.get("key"): t for t in (node.get("spec") or {}).get("taints") or []}
    going = taints.get(TAINT_IMPENDING_TERMINATION) or taints.get(TAINT_AUTOSCALER_DELETE)
    annotations = meta.get("annotations") or {}
    problem_text = ", ".join(f"{t}: {(conds[t].get('message') or conds[t].get('reason') or '')}".rstrip(": ") for t in problems)
    if going is not None:
        since = epoch(going.get("timeAdded"))
        if going.get("key") == TAINT_IMPENDING_TERMINATION:
            prov = spec.provisioning
            notice = prov.reclaim_notice if isinstance(prov, SpotProvisioning) else DEFAULT_GRACE_SECONDS
            if since is not None:
                expires = since + notice if expires is None else min(expires, since + notice)
            message = "the node is being terminated (spot preemption or the end of its run time)"
        else:
            message = "the cluster autoscaler is removing the node"
        return HostInfo(name, pool, HostPhase.DRAINING, node_id=name, since=since, expires_at=expires, healthy=healthy, message=message)
    if (node.get("spec") or {}).get("unschedulable"):
        reason = annotations.get(ANN_CORDONED) or "cordoned"
        since = epoch(annotations.get(ANN_CORDONED_AT))
        phase = HostPhase.CORDONED if is_ready else HostPhase.REPAIRING
        return HostInfo(name, pool, phase, node_id=name, since=since, expires_at=expires, healthy=healthy,
                        message="; ".join(m for m in (reason, problem_text) if m))
    if not is_ready:
        since = epoch(ready.get("lastTransitionTime"))
        created = epoch(meta.get("creationTimestamp"))
        if not ready or since is None or created is None or since - created <= REGISTER_WINDOW_SECONDS:
            return HostInfo(name, pool, HostPhase.PROVISIONING, node_id=name, since=created, expires_at=expires, healthy=False,
                            message="the node has not been Ready yet")
        why = ready.get("message") or ready.get("reason") or "not Ready"
        return HostInfo(name, pool, HostPhase.REPAIRING, node_id=name, since=since, expires_at=expires, healthy=False,
                        message=f"node not Ready ({why}); GKE auto-repair recreates such nodes")
    return HostInfo(name, pool, HostPhase.READY, node_id=name, since=epoch(ready.get("lastTransitionTime")), expires_at=expires,
                    healthy=healthy, message=problem_text)


def node_hosts(nodes: list[dict[str, Any]], pools: dict[str, PoolSpec]) -> list[HostInfo]:
    """Every node of a pool, as hosts, by name."""
    out = []
    for node in nodes:
        pool = node_pool(node, pools)
        if pool is not None:
            out.append(node_host(node, pool, pools[pool]))
    return sorted(out, key=lambda h: h.name)


# ---------------------------------------------------------------- notices


def host_notices(host: HostInfo, spec: PoolSpec, now: float) -> list[Notice]:
    """What a host of a running gang announces: a reclaim (draining), an unhealthy host (cordoned,
    repairing or failing conditions), or its end within the lead time (DWS flex-start with
    ``nodeRecyclingLeadTime``: recycle; calendar within ``drainBefore`` of the window end)."""
    if host.phase == HostPhase.DRAINING:
        return [Notice(NoticeKind.RECLAIM, host.name, host.expires_at, host.message)]
    if host.phase in (HostPhase.CORDONED, HostPhase.REPAIRING) or not host.healthy:
        return [Notice(NoticeKind.UNHEALTHY, host.name, None, host.message or "the node is unhealthy")]
    prov = spec.provisioning
    if host.expires_at is None:
        return []
    if isinstance(prov, DwsCalendarProvisioning) and now >= host.expires_at - prov.drain_before:
        return [Notice(NoticeKind.WINDOW_END, host.name, host.expires_at, "the DWS calendar window ends")]
    if isinstance(prov, DwsFlexProvisioning) and prov.node_recycling_lead_time is not None and now >= host.expires_at - prov.node_recycling_lead_time:
        return [Notice(NoticeKind.RECYCLE, host.name, host.expires_at, "the flex-start node reaches its maximum run duration")]
    return []


# ---------------------------------------------------------------- cordon


def cordon_patch(reason: str, now: float) -> dict[str, Any]:
    """What ``kubectl cordon`` writes, plus why and when in rayfleet's annotations."""
    return {"metadata": {"annotations": {ANN_CORDONED: reason or "cordoned by rayfleet", ANN_CORDONED_AT: rfc3339(now)}},
            "spec": {"unschedulable": True}}


def uncordon_patch() -> dict[str, Any]:
    return {"metadata": {"annotations": {ANN_CORDONED: None, ANN_CORDONED_AT: None}}, "spec": {"unschedulable": False}}
