"""Services on KubeRay: one RayService per Service (:func:`.manifests.rayservice`), created or
updated to the replicas quota granted (idempotent: the spec's hash is kept in an annotation, an
unchanged spec is not written), its status read from KubeRay (the active RayCluster, the
application's status) and from Serve (replica counts, through the active cluster's dashboard)."""

from __future__ import annotations

from typing import Any

from ...api import Service
from ...config import PlatformConfig
from ...errors import BackendError, Conflict, NotFound
from ..base import ServiceRunStatus
from . import crd_schema
from .dashboard import Dashboard, RayToken
from .kube import KubeClient
from .manifests import ANN_SPEC_HASH, ServeAppBuilder, rayservice, spec_hash

ANN_REPLICAS_TARGET = "rayfleet.io/replicas-target"
SERVE_PORT = 8000


def validated(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` checked against its CRD schema (BackendError naming what is wrong)."""
    try:
        return crd_schema.check(obj)
    except crd_schema.ManifestInvalid as e:
        raise BackendError(str(e)) from None


class RayServices:
    """``serve_app``: the Serve application of a Service (None: services are refused)."""

    def __init__(self, kube: KubeClient, config: PlatformConfig, namespace: str, token: RayToken, dashboard: Dashboard,
                 serve_app: ServeAppBuilder | None):
        self.kube, self.config, self.namespace = kube, config, namespace
        self.token, self.dashboard, self.serve_app = token, dashboard, serve_app

    def _object(self, svc: Service, pool: str, replicas: int) -> dict[str, Any]:
        if self.serve_app is None:
            raise BackendError(f"service {svc.name}: this KubeRay backend was made without a Serve application builder (serve_app)")
        try:
            obj = rayservice(svc, self.config, self.serve_app, pool=pool, granted=replicas, auth_secret=self.token.secret)
        except ValueError as e:
            raise BackendError(f"service {svc.name}: {e}") from None
        obj["metadata"]["annotations"][ANN_REPLICAS_TARGET] = str(replicas)
        obj["metadata"]["annotations"][ANN_SPEC_HASH] = spec_hash(obj["spec"])
        return validated(obj)

    def deploy(self, svc: Service, pool: str, replicas: int) -> None:
        """Create or update the Service's RayService with at most ``replicas`` replicas."""
        self.token.ensure()
        wanted = self._object(svc, pool, replicas)
        for _ in range(5):
            current = self.kube.find("RayService", svc.name, self.namespace)
            if current is None:
                try:
                    self.kube.create(wanted)
                except Conflict:
                    continue
                return
            have = ((current.get("metadata") or {}).get("annotations") or {})
            if have.get(ANN_SPEC_HASH) == wanted["metadata"]["annotations"][ANN_SPEC_HASH]:
                return
            updated = {**current, "spec": wanted["spec"]}
            updated["metadata"] = {**current["metadata"], "annotations": {**have, **wanted["metadata"]["annotations"]}}
            try:
                self.kube.replace(updated)
            except Conflict:
                continue
            return
        raise Conflict(f"RayService {svc.name} kept changing; gave up updating it")

    def status(self, name: str) -> ServiceRunStatus | None:
        """Replica counts from Serve (the active RayCluster's dashboard), health from KubeRay."""
        obj = self.kube.find("RayService", name, self.namespace)
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        target = int((meta.get("annotations") or {}).get(ANN_REPLICAS_TARGET, "0"))
        status = obj.get("status") or {}
        active = status.get("activeServiceStatus") or {}
        raycluster = active.get("rayClusterName")
        url = f"http://{name}-serve-svc.{self.namespace}.svc.cluster.local:{SERVE_PORT}"
        app_status = ((active.get("applicationStatuses") or {}).get(name) or {}).get("status", "")
        if not raycluster:
            return ServiceRunStatus(name, target, 0, 0, url=None, healthy=False, message="the RayService has no active RayCluster yet")
        try:
            details = self.dashboard.get(raycluster, "/api/serve/applications/")
        except (BackendError, NotFound) as e:
            return ServiceRunStatus(name, target, 0, 0, url=url, healthy=False, message=f"Serve status unavailable: {e}")
        app = ((details or {}).get("applications") or {}).get(name) or {}
        deployments = list((app.get("deployments") or {}).values())
        dep = deployments[0] if len(deployments) == 1 else next(
            (d for d in deployments if d.get("deployment_config", {}).get("autoscaling_config")), {}
        )
        running = sum(1 for r in dep.get("replicas") or [] if r.get("state") == "RUNNING")
        wanted = int(dep.get("target_num_replicas") or 0)
        healthy = (app.get("status") or app_status) == "RUNNING"
        message = dep.get("message") or app.get("message") or ""
        return ServiceRunStatus(name, target, running, wanted, url=url + (app.get("route_prefix") or "/").rstrip("/"), healthy=healthy, message=message)

    def delete(self, name: str) -> None:
        self.kube.delete("RayService", name, self.namespace)
