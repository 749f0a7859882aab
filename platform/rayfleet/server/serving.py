"""How the control service reaches Ray Serve on its backend.

On the local backend the service talks to the cluster's Serve REST API and GCS directly
(``serve.deployer.ServeDeployer``: no Ray driver in the control service, so a restart of the
cluster never takes the service down). On KubeRay the backend itself owns Serve through RayService
objects (``Backend.deploy_service``). The ServiceManager sees one small interface either way.
"""

from __future__ import annotations

from typing import Protocol

from ..api import PoolSpec, Service
from ..backends.base import Backend, ServiceRunStatus, ServingBackend
from ..serve.deployer import ServeDeployer, ServeOptions


class Serving(Protocol):
    def deploy(self, svc: Service, pool: str, pool_spec: PoolSpec, granted: int, node_labels: dict[str, str]) -> None: ...

    def status(self, name: str) -> ServiceRunStatus | None: ...

    def delete(self, name: str) -> None: ...


class BackendServing:
    """Serve through the backend (KubeRay: RayService)."""

    def __init__(self, backend: ServingBackend):
        self.backend = backend

    def deploy(self, svc: Service, pool: str, pool_spec: PoolSpec, granted: int, node_labels: dict[str, str]) -> None:
        self.backend.deploy_service(svc, pool, pool_spec, granted)

    def status(self, name: str) -> ServiceRunStatus | None:
        return self.backend.service_status(name)

    def delete(self, name: str) -> None:
        self.backend.delete_service(name)


class LocalServing:
    """Serve on the local Ray cluster through its dashboard's Serve REST API."""

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
            self._deployer = ServeDeployer(info.dashboard_url, info.address, options=self.options)
            self._for = info.dashboard_url
        return self._deployer

    def deploy(self, svc: Service, pool: str, pool_spec: PoolSpec, granted: int, node_labels: dict[str, str]) -> None:
        self.deployer.deploy(svc, pool, pool_spec, granted, node_labels=node_labels or None)

    def status(self, name: str) -> ServiceRunStatus | None:
        obs = self.deployer.status(name)
        if not obs.exists:
            return None
        return ServiceRunStatus(
            name=name,
            replicas_target=int(obs.cap or 0),
            replicas_running=obs.running,
            replicas_wanted=obs.wanted if obs.wanted is not None else obs.target,
            url=obs.url,
            healthy=obs.app_status in ("RUNNING", "DEPLOYING"),
            message=obs.message,
        )

    def delete(self, name: str) -> None:
        self.deployer.delete(name)


def serving_for(backend: Backend, serve_port: int = 8000) -> Serving:
    if isinstance(backend, ServingBackend):
        return BackendServing(backend)
    return LocalServing(backend, serve_port)
