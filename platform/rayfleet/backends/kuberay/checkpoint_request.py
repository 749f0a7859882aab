"""Asking a run on KubeRay to checkpoint now: a ConfigMap mounted into its pods.

Every run's RayCluster mounts the ConfigMap ``<run>-notice`` (``optional``: a pod starts before
it exists) as a directory at :data:`NOTICE_DIR` in the head and worker containers, whose
environment names the file in :data:`NOTICE_ENV` (``RAYFLEET_NOTICE_FILE``). The backend creates the
ConfigMap empty at launch; :meth:`KubeRayBackend.request_checkpoint` writes the key
:data:`NOTICE_KEY` holding one JSON line ``{"checkpoint": <epoch seconds>}``, the time of the
request. The kubelet refreshes a mounted ConfigMap in place (its periodic sync, typically within
a minute), so a training reading the file through ``rayfleet.train.notice`` sees a newer
timestamp and saves a checkpoint. A missing file or key means no request. A later request writes a
later timestamp: a reader acts on a timestamp it has not acted on yet.

Why a ConfigMap: an annotation on the RayJob would need the downward API, which exposes only the
pod's own labels and annotations, not the RayJob's; a ConfigMap volume is the plain Kubernetes way to
hand a running pod a value that changes.
"""

from __future__ import annotations

import json
from typing import Any

NOTICE_ENV = "RAYFLEET_NOTICE_FILE"
NOTICE_DIR = "/rayfleet/notice"
NOTICE_KEY = "notice.json"
NOTICE_VOLUME = "rayfleet-notice"


def notice_configmap_name(run_name: str) -> str:
    """The ConfigMap of a run's checkpoint requests (``run_name`` is at most 47 characters)."""
    return f"{run_name}-notice"


def notice_line(requested_at: float) -> str:
    """The file's content: one JSON line with the time of the request."""
    return json.dumps({"checkpoint": requested_at}) + "\n"


def mount_notice(pod_template: dict[str, Any], configmap: str) -> dict[str, Any]:
    """Mount ``configmap`` at :data:`NOTICE_DIR` into every container of ``pod_template`` (a
    PodTemplateSpec, changed in place) and name the file in ``$RAYFLEET_NOTICE_FILE``."""
    spec = pod_template.setdefault("spec", {})
    spec.setdefault("volumes", []).append({"name": NOTICE_VOLUME, "configMap": {"name": configmap, "optional": True}})
    for container in spec.get("containers") or []:
        container.setdefault("env", []).append({"name": NOTICE_ENV, "value": f"{NOTICE_DIR}/{NOTICE_KEY}"})
        container.setdefault("volumeMounts", []).append({"name": NOTICE_VOLUME, "mountPath": NOTICE_DIR, "readOnly": True})
    return pod_template


def notice_configmap(name: str, namespace: str, labels: dict[str, str], requested_at: float | None = None) -> dict[str, Any]:
    """The ConfigMap itself: empty (no request yet), or holding a request made at ``requested_at``."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "data": {},
    }
    if requested_at is not None:
        body["data"][NOTICE_KEY] = notice_line(requested_at)
    return body


def read_request(configmap: dict[str, Any] | None) -> float | None:
    """The time of the latest request a ConfigMap holds, or None."""
    line = ((configmap or {}).get("data") or {}).get(NOTICE_KEY)
    if not line:
        return None
    try:
        value = json.loads(line).get("checkpoint")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
