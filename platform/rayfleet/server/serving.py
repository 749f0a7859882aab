"""How the control service reaches Ray Serve on its backend.

On the local backend the service talks to the cluster's Serve REST API and GCS directly
(``serve.deployer.ServeDeployer`` driven by ``serve.scaler.ReplicaScaler``: no Ray driver in the
control service, so a restart of the cluster never takes the service down). On KubeRay the backend
itself owns Serve through RayService objects (``Backend.deploy_service``).

The ServiceManager sees one small interface either way: :meth:`Serving.scale` deploys a Service (or
re-caps it to the replica groups quota granted, a no-op when nothing changed) and reports what
runs, what load wants and why the counts differ; :meth:`Serving.delete` removes it;
:meth:`Serving.migrate` moves replica groups off hosts (a replacement up first, then traffic, then
the old group drained) where the backend can (``can_migrate``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from ..api import PoolSpec, Service, ServiceState
from ..backends.base import Backend, GroupMigrationBackend, ServiceRunStatus, ServingBackend
from ..serve.deployer import ServeDeployer, ServeOptions, base_replicas
from ..serve.scaler import ReplicaScaler


class Serving(Protocol):
    can_migrate: bool

    def scale(self, svc: Service, pool: str, pool_spec: PoolSpec, granted: int, node_labels: dict[str, str]) -> ServiceRunStatus: ...

    def migrate(self, name: str, away_from: set[str], pool: str | None = None, pool_spec: PoolSpec | None = None) -> list[int]: ...

    def delete(self, name: str) -> None: ...


def state_from_counts(svc: Service, rs: ServiceRunStatus) -> ServiceState:
    """A Service's state from replica counts alone (for backends that report no state)."""
    if rs.replicas_running == 0:
        return ServiceState.DEPLOYING  # nothing routed to yet: the RayService or its groups are starting
    if not rs.healthy or (svc.spec.autoscaling.min_replicas > 0 and rs.replicas_running < base_replicas(svc)):
        return ServiceState.DEGRADED
    return ServiceState.RUNNING


class BackendServing:
    """Serve through the backend (KubeRay: RayService)."""

    def __init__(self, backend: ServingBackend):
        self.backend = backend
        self.can_migrate = isinstance(backend, GroupMigrationBackend)
        self._pools: dict[str, str] = {}   # service -> the pool it was last deployed on (new groups go there)

    def scale(self, svc: Service, pool: str, pool_spec: PoolSpec, granted: int, node_labels: dict[str, str]) -> ServiceRunStatus:
        current = self.backend.service_status(svc.name)
        if current is None or current.replicas_target != granted or self._pools.get(svc.name) != pool:
            self.backend.deploy_service(svc, pool, pool_spec, granted)   # idempotent: a restart re-sends it once
            self._pools[svc.name] = pool
            current = self.backend.service_status(svc.name)
        if current is None:
            return ServiceRunStatus(svc.name, granted, 0, base_replicas(svc), state=ServiceState.DEPLOYING, message="the RayService is being created")
        return current if current.state is not None else replace(current, state=state_from_counts(svc, current))

    def migrate(self, name: str, away_from: set[str], pool: str | None = None, pool_spec: PoolSpec | None = None) -> list[int]:
        """Move groups off ``away_from`` (to ``pool``); [] where the backend cannot (KubeRay: see docs/serve.md)."""
        if not isinstance(self.backend, GroupMigrationBackend):
            return []
        return self.backend.migrate_groups(name, away_from, pool=pool, pool_spec=pool_spec)

    def delete(self, name: str) -> None:
        self._pools.pop(name, None)
        self.backend.delete_service(name)


class LocalServing:
    """Serve on the local Ray cluster through its dashboard's Serve REST API. rayfleet moves no
    group itself here (``can_migrate`` False): a host under a reclaim or recycle notice is drained
    in Ray, which is Ray Serve's own signal to move the replicas whose actor runs there, and a
    group still on it at the deadline is replaced once the host is gone."""

    can_migrate = False

    def __init__(self, backend: Backend, serve_port: int):
        self.backend = backend
        self.options = ServeOptions(http_host="127.0.0.1", http_port=serve_port)
        self._deployer: ServeDeployer | None = None
        self._for: str | None = None

    @property
    def deployer(self) -> ServeDeployer:
        info = self.backend.info()
        if info is None or info.dashboard_url is None:
            from ..errors import BackendError

            raise BackendError("the local Ray cluster is not up")
        if self._deployer is None or self._for != info.dashboard_url:  # the cluster was restarted
            if self._deployer is not None:
                self._deployer.close()
            token = self.backend.auth_token() if hasattr(self.backend, "auth_token") else None
            self._deployer = ServeDeployer(info.dashboard_url, info.address, options=self.options, auth_token=token)
            self._for = info.dashboard_url
        return self._deployer

    def scale(self, svc: Service, pool: str, pool_spec: PoolSpec, granted: int, node_labels: dict[str, str]) -> ServiceRunStatus:
        rep = ReplicaScaler(self.deployer).apply(svc, pool, pool_spec, granted, node_labels=node_labels or None)
        return ServiceRunStatus(
            name=svc.name,
            replicas_target=rep.cap,
            replicas_running=rep.running,
            replicas_wanted=rep.wanted,
            url=rep.url,
            healthy=rep.state in (ServiceState.RUNNING, ServiceState.DEPLOYING),
            message=rep.message,
            state=rep.state,
        )

    def migrate(self, name: str, away_from: set[str], pool: str | None = None, pool_spec: PoolSpec | None = None) -> list[int]:
        return []

    def delete(self, name: str) -> None:
        self.deployer.delete(name)


def serving_for(backend: Backend, serve_port: int = 8000) -> Serving:
    if isinstance(backend, ServingBackend):
        return BackendServing(backend)
    return LocalServing(backend, serve_port)
