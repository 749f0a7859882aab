"""Asking a run on KubeRay to checkpoint now: a ConfigMap mounted into its pods.

Every run's RayCluster mounts the ConfigMap ``<run>-notice`` (``optional``: a pod starts before
it exists) as a directory at :data:`NOTICE_DIR` in the head and worker containers, whose
environment names the file in :data:`NOTICE_ENV` (``RAYFLEET_CHECKPOINT_REQUEST``, the same variable and
file format as on the local backend: ``backends/rundir.checkpoint_request``). The backend creates the
ConfigMap empty at launch; :meth:`KubeRayBackend.request_checkpoint` writes the key
:data:`NOTICE_KEY` holding one JSON line ``{"seq": <n>, "at": <epoch seconds>, "reason": ...}``, the
request's number and time. The kubelet refreshes a mounted ConfigMap in place (its periodic sync,
typically within a minute), so a training reading the file through ``rayfleet.train.notice`` sees
a newer number and saves a checkpoint. A missing file or key means no request; a reader acts on a
number it has not acted on yet.

Why a ConfigMap: an annotation on the RayJob would need the downward API, which exposes only the
pod's own labels and annotations, not the RayJob's; a ConfigMap volume is the plain Kubernetes way to
hand a running pod a value that changes.
"""

from __future__ import annotations

import json
from typing import Any

from ..rundir import (
    CHECKPOINT_REQUEST_ENV,
    CHECKPOINT_REQUEST_FILE,
    checkpoint_request,
    checkpoint_request_seq,
)

NOTICE_ENV = CHECKPOINT_REQUEST_ENV
NOTICE_DIR = "/rayfleet/notice"
NOTICE_KEY = CHECKPOINT_REQUEST_FILE
NOTICE_VOLUME = "rayfleet-notice"


def notice_configmap_name(run_name: str) -> str:
    """The ConfigMap of a run's checkpoint requests (``run_name`` is at most 47 characters)."""
    return f"{run_name}-notice"


def notice_line(requested_at: float, seq: int = 1) -> str:
    """The file's content: one JSON line, request number ``seq`` made at ``requested_at``."""
    return json.dumps(checkpoint_request(seq, requested_at)) + "\n"


def request_seq(configmap: dict[str, Any] | None) -> int:
    """The number of the latest request a ConfigMap holds (0: none)."""
    line = ((configmap or {}).get("data") or {}).get(NOTICE_KEY)
    try:
        return checkpoint_request_seq(json.loads(line)) if line else 0
    except ValueError:
        return 0


def mount_notice(pod_template: dict[str, Any], configmap: str) -> dict[str, Any]:
    """Mount ``configmap`` at :data:`NOTICE_DIR` into every container of ``pod_template`` (a
    PodTemplateSpec, changed in place) and name the file in ``$RAYFLEET_CHECKPOINT_REQUEST``."""
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
        value = json.loads(line).get("at")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
