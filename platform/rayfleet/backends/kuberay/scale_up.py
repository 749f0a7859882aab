"""What the cluster autoscaler said about a run's pending pods (pure: Pod and Event objects in).

A pool with no ProvisioningRequest (on demand, spot, a reservation, DWS flex-start not queued) gets
its hosts from GKE's cluster autoscaler, which answers each pending pod with a Kubernetes Event
(``source.component: cluster-autoscaler``, ``involvedObject`` the pod):

====================  ===========================================================================
reason                 meaning
====================  ===========================================================================
TriggeredScaleUp      "pod triggered scale-up: [{NODE_GROUP CURRENT->TARGET (max: MAX)}]": hosts
                      are being made
NotTriggerScaleUp     "pod didn't trigger scale-up: ..." (the pool is at its maximum, no node
                      group fits the pod): no host is coming for now
FailedScaleUp         GKE: "Node scale up in zones ZONES associated with this pod failed: CAUSE.
                      Pod is at risk of not being scheduled." CAUSE ``GCE out of resources``
                      (Compute Engine's ``ZONE_RESOURCE_POOL_EXHAUSTED``) is a stockout; others
                      (``GCE quota exceeded``, ``IP space exhausted``, ...) are not capacity the
                      zone lacks, and waiting (or an operator) may fix them
====================  ===========================================================================

Each pod is judged by its newest such event (a scale-up triggered after a failure means the
autoscaler is trying again, in another zone or node group). A run is a **STOCKOUT** when one of its
unscheduled worker pods was last answered out of resources: a gang needs every host, so one
host the zone lacks means the gang cannot start (the compute class's next step, at once). A pod
last answered ``NotTriggerScaleUp`` or another ``FailedScaleUp`` keeps the run **PENDING**, with the
autoscaler's words as its message (the step's ``waitForCapacity`` decides). Pods already on a node
are not looked at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..base import RunState
from .nodes import epoch

SOURCE = "cluster-autoscaler"
#: The field selector of the Events worth reading (kube-apiserver's ``source`` field is ``source.component``).
FIELD_SELECTOR = f"involvedObject.kind=Pod,source={SOURCE}"

TRIGGERED = "TriggeredScaleUp"
NOT_TRIGGERED = "NotTriggerScaleUp"
FAILED = "FailedScaleUp"
REASONS = frozenset({TRIGGERED, NOT_TRIGGERED, FAILED})

#: Causes of a failed scale-up that mean the zone has no such machine now.
OUT_OF_RESOURCES = ("GCE out of resources", "ZONE_RESOURCE_POOL_EXHAUSTED")


@dataclass(frozen=True)
class ScaleUpAnswer:
    state: RunState          # STOCKOUT, or PENDING with the autoscaler's message
    message: str


def involved_pod(event: dict[str, Any]) -> str | None:
    """The name of the pod an autoscaler Event is about (None: not about a pod)."""
    obj = event.get("involvedObject") or {}
    return obj.get("name") if obj.get("kind") == "Pod" else None


def _when(event: dict[str, Any]) -> tuple[float, int]:
    """An Event's time (its last occurrence; events.k8s.io's ``eventTime`` or ``series``; its
    creation), then its resourceVersion: a later write of the same second is newer."""
    series = (event.get("series") or {}).get("lastObservedTime")
    t = epoch(event.get("lastTimestamp") or series or event.get("eventTime")
              or (event.get("metadata") or {}).get("creationTimestamp")) or 0.0
    rv = str((event.get("metadata") or {}).get("resourceVersion") or "")
    return t, int(rv) if rv.isdigit() else 0


def _newest(pod: dict[str, Any], events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    meta = pod.get("metadata") or {}
    name, uid = meta.get("name"), meta.get("uid")
    mine = [e for e in events if e.get("reason") in REASONS and involved_pod(e) == name
            and (not uid or not (e.get("involvedObject") or {}).get("uid") or e["involvedObject"]["uid"] == uid)]
    return max(mine, key=_when) if mine else None


def out_of_resources(event: dict[str, Any]) -> bool:
    message = event.get("message") or ""
    return event.get("reason") == FAILED and any(cause in message for cause in OUT_OF_RESOURCES)


def scale_up_answer(pods: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]]) -> ScaleUpAnswer | None:
    """What the autoscaler's newest word on each unscheduled pod makes of a pending run; None when
    it said nothing that changes it (no event, or a scale-up under way)."""
    events = list(events)
    waiting: ScaleUpAnswer | None = None
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        if (pod.get("spec") or {}).get("nodeName") or (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            continue
        event = _newest(pod, events)
        if event is None or event.get("reason") == TRIGGERED:
            continue
        name = (pod.get("metadata") or {}).get("name", "")
        text = f"cluster autoscaler, pod {name}: {event.get('message') or event.get('reason')}"
        if out_of_resources(event):
            return ScaleUpAnswer(RunState.STOCKOUT, text)
        waiting = waiting or ScaleUpAnswer(RunState.PENDING, text)
    return waiting
