"""Built-in Kubernetes kinds (Deployment, Service, Secret, RBAC, ...) checked against the official
``kubernetes`` client's models, which are generated from the Kubernetes API's OpenAPI schema and
(client 37 and later) are pydantic models that forbid unknown fields and check every field's
type and every required field. Used for the manifests of the control service itself
(:mod:`.self_manifests`); CRD kinds are checked by :mod:`.crd_schema` against their vendored CRDs."""

from __future__ import annotations

from typing import Any

import pydantic
from kubernetes import client as k8s

#: (apiVersion, kind) -> (the client's model, namespaced)
MODELS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "ServiceAccount"): ("V1ServiceAccount", True),
    ("v1", "Secret"): ("V1Secret", True),
    ("v1", "Service"): ("V1Service", True),
    ("apps/v1", "Deployment"): ("V1Deployment", True),
    ("policy/v1", "PodDisruptionBudget"): ("V1PodDisruptionBudget", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("V1Role", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("V1RoleBinding", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("V1ClusterRole", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("V1ClusterRoleBinding", False),
}


def has_model(api_version: str, kind: str) -> bool:
    return (api_version, kind) in MODELS


def model_errors(obj: dict[str, Any]) -> list[str]:
    """``path: message`` for every way ``obj`` breaks its kind's schema, then its namespace scope."""
    name, namespaced = MODELS[(obj["apiVersion"], obj["kind"])]
    model: type[pydantic.BaseModel] = getattr(k8s, name)
    errors: list[str] = []
    try:
        model.model_validate(obj, strict=True)
    except pydantic.ValidationError as e:
        for err in e.errors():
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
            errors.append(f"{path or '(object)'}: {err['msg']}")
    ns = (obj.get("metadata") or {}).get("namespace")
    if namespaced and not ns:
        errors.append(f"metadata.namespace: {obj['kind']} is namespaced; a namespace is required")
    elif not namespaced and ns:
        errors.append(f"metadata.namespace: {obj['kind']} is cluster-scoped; it takes no namespace")
    return errors
