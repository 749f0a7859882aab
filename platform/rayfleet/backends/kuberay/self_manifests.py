"""``rayfleet export --target gke --self``: the control service itself on GKE.

What a platform team applies to run rayfleet next to the KubeRay operator: a Deployment of
``replicas`` control-service pods (one leads, the others serve the API and take over: see
docs/operations.md) spread over nodes, a Service in front of them, a PodDisruptionBudget that keeps
one up through node upgrades, the ServiceAccount and the RBAC of exactly what the KubeRay backend
does (RayClusters, RayJobs, RayServices, ProvisioningRequests, their ConfigMaps, PodTemplates and
token Secrets in the fleet namespace; reading Pods and Events there; reading and cordoning Nodes),
the platform config as a ConfigMap (with ``kuberay.inCluster: true``), a Secret with a bootstrap
admin token, and the PostgreSQL connection Secret when its URL is given. Every object is checked
against the Kubernetes API schema of its kind (:mod:`.core_models`, :mod:`.crd_schema`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import yaml

from ...config import PlatformConfig
from .manifests import cluster_kuberay

NAME = "rayfleet-control"
PORT = 8265
CONFIG_PATH = "/etc/rayfleet/platform.yaml"
DATA_DIR = "/var/lib/rayfleet"
STORE_SECRET = "rayfleet-store"              # key ``url``: postgresql://...
ADMIN_SECRET = "rayfleet-admin-token"        # key ``token``: the bootstrap admin token ($RAYFLEET_ADMIN_TOKEN)
LABELS = {"app.kubernetes.io/name": "rayfleet", "app.kubernetes.io/component": "control-service"}

FILES: dict[str, str] = {
    "ServiceAccount": "40-rayfleet-serviceaccount.yaml",
    "Role": "41-rayfleet-rbac.yaml",
    "RoleBinding": "41-rayfleet-rbac.yaml",
    "ClusterRole": "41-rayfleet-rbac.yaml",
    "ClusterRoleBinding": "41-rayfleet-rbac.yaml",
    "Secret": "42-rayfleet-secrets.yaml",
    "ConfigMap": "43-rayfleet-config.yaml",
    "Deployment": "44-rayfleet-control.yaml",
    "Service": "44-rayfleet-control.yaml",
    "PodDisruptionBudget": "44-rayfleet-control.yaml",
}

ABOUT: dict[str, str] = {
    "ServiceAccount": "the control service's identity in the cluster",
    "Role": "what the KubeRay backend does in the fleet namespace, and nothing else",
    "ClusterRole": "Nodes: read (pool capacity) and patch (cordon a faulty host)",
    "Secret": "the bootstrap admin token; the PostgreSQL URL when given (else create it: see below)",
    "ConfigMap": "the platform config, with kuberay.inCluster: true",
    "Deployment": "the control-service replicas (one leader runs the controller; docs/operations.md)",
}

# The KubeRay backend's requests (backends/kuberay/client.py, kube.py, dashboard.py, services.py),
# as RBAC rules: one line per group of resources.
_ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["ray.io"], "resources": ["rayclusters", "rayjobs", "rayservices"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["autoscaling.x-k8s.io"], "resources": ["provisioningrequests"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["podtemplates"], "verbs": ["get", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"]},   # a RayCluster's dashboard (logs), from outside the cluster
]
_CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
]


@dataclass(frozen=True)
class ControlService:
    """What ``--self`` was given: the image (rayfleet installed, ``rayfleet`` on its PATH), how many
    replicas, the PostgreSQL URL (None: the Secret is created by hand) and the admin token (None:
    a new random one)."""

    image: str
    replicas: int = 2
    store_url: str | None = None
    admin_token: str | None = None


def _meta(name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(LABELS)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def platform_config_yaml(cfg: PlatformConfig) -> str:
    """The config's documents as one YAML file, as the pods read it: the KubeRay client of the
    cluster the service runs in (the first Cluster document) uses the pod's service account (no
    kubeconfig); other clusters keep their settings (their kubeconfig must be mounted)."""
    docs = []
    home = cfg.cluster.name if cfg.cluster is not None else None
    for doc in cfg.objects():
        body = doc.to_dict()
        body.pop("status", None)
        if body["kind"] == "Cluster" and doc.name == home:
            kuberay = body.setdefault("spec", {}).setdefault("kuberay", {})
            kuberay.pop("kubeconfig", None)
            kuberay.pop("context", None)
            kuberay["inCluster"] = True
        docs.append(body)
    return yaml.safe_dump_all(docs, sort_keys=False)


def control_service_objects(cfg: PlatformConfig, control: ControlService) -> list[dict[str, Any]]:
    _, kuberay = cluster_kuberay(cfg)
    ns = kuberay.namespace
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, ns)}
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]
    rbac = "rbac.authorization.k8s.io"
    role = {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": _meta(NAME, ns), "rules": _ROLE_RULES}
    binding = {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": _meta(NAME, ns),
               "roleRef": {"apiGroup": rbac, "kind": "Role", "name": NAME}, "subjects": subject}
    cluster_role = {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": _meta(f"{NAME}-{ns}", None), "rules": _CLUSTER_RULES}
    cluster_binding = {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(f"{NAME}-{ns}", None),
                       "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": f"{NAME}-{ns}"}, "subjects": subject}
    admin = {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(ADMIN_SECRET, ns), "type": "Opaque",
             "stringData": {"token": control.admin_token or secrets.token_urlsafe(32)}}
    objects = [sa, role, binding, cluster_role, cluster_binding, admin]
    if control.store_url:
        objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": _meta(STORE_SECRET, ns), "type": "Opaque",
                        "stringData": {"url": control.store_url}})
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(NAME, ns),
                    "data": {"platform.yaml": platform_config_yaml(cfg)}})
    objects += [_deployment(control, ns), _service(ns), _disruption_budget(ns)]
    return objects


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _deployment(control: ControlService, ns: str) -> dict[str, Any]:
    container = {
        "name": "rayfleet",
        "image": control.image,
        "command": ["rayfleet", "serve", "--config", CONFIG_PATH, "--host", "0.0.0.0", "--port", str(PORT), "--data-dir", DATA_DIR],
        "env": [
            _secret_env("RAYFLEET_STORE", STORE_SECRET, "url"),
            _secret_env("RAYFLEET_ADMIN_TOKEN", ADMIN_SECRET, "token"),
            {"name": "RAYFLEET_HOME", "value": DATA_DIR},
            {"name": "HOME", "value": "/tmp"},   # (the root filesystem is read-only)
            {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # ready: the store answers (a follower is ready too: it serves the API); alive: it listens
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/rayfleet", "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec = {
        "serviceAccountName": NAME,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": NAME}}, {"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
        # replicas on different nodes (and zones where there are several): one node's loss leaves a replica to take over
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": LABELS}},
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": LABELS}},
        ],
        "terminationGracePeriodSeconds": 30,   # a clean stop releases the lease: the next replica takes over at once
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME, ns), "spec": {
        "replicas": control.replicas,
        "selector": {"matchLabels": dict(LABELS)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": dict(LABELS)}, "spec": pod_spec},
    }}


def _service(ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, ns), "spec": {
        "type": "ClusterIP", "selector": dict(LABELS),
        "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}}


def _disruption_budget(ns: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(NAME, ns), "spec": {
        "minAvailable": 1, "selector": {"matchLabels": dict(LABELS)}}}


def readme_section(cfg: PlatformConfig, control: ControlService) -> list[str]:
    _, kuberay = cluster_kuberay(cfg)
    ns = kuberay.namespace
    lines = ["", "## The control service (`--self`)", "",
             f"{control.replicas} replicas of `{control.image}` in namespace `{ns}` (Deployment `{NAME}`, Service `{NAME}:{PORT}`).",
             "Every replica serves rayfleet's API and the Ray Jobs API; the one holding the controller lease runs the controller,",
             "and another takes over within about 12 s if it dies (docs/operations.md in the rayfleet repository).", ""]
    if not control.store_url:
        lines += ["The replicas share a PostgreSQL store: create its Secret before applying (Cloud SQL: through the Cloud SQL",
                  "Auth Proxy or a private IP):", "", "```sh",
                  f"kubectl -n {ns} create secret generic {STORE_SECRET} --from-literal=url='postgresql://USER:PASSWORD@HOST:5432/rayfleet'",
                  "```", ""]
    others = [n for n in cfg.clusters if cfg.cluster is not None and n != cfg.cluster.name]
    if others:
        lines += [f"The service runs in cluster `{cfg.cluster.name if cfg.cluster else ''}` (its KubeRay client uses the pod's service account).",
                  f"It reaches {', '.join(f'`{n}`' for n in others)} through the kubeconfig each Cluster document names: mount those",
                  "files into the pods (a Secret volume) at the paths the config gives.", ""]
    lines += [f"`{FILES['Secret']}` holds the bootstrap admin token (Secret `{ADMIN_SECRET}`, key `token`): keep the file out",
              "of version control. With it, mint team tokens: `rayfleet token create --team TEAM --label ...`",
              f"(`--url http://{NAME}.{ns}:{PORT}`, `RAYFLEET_TOKEN` = the admin token); the service mints none itself."]
    return lines
