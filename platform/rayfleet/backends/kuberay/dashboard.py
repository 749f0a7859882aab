"""How the KubeRay backend reaches its RayClusters' Ray dashboards: the shared Ray token (a Secret)
and a GET of a dashboard path.

The token: every RayCluster rayfleet makes names Secret ``<cluster>-ray-token`` (key
``auth_token``) in ``authOptions.secretName``, so one token opens every dashboard. It is created
once, by whichever replica needs it first (a concurrent creation is read back).

The dashboard, either at ``http://<raycluster>-head-svc.<ns>.svc.cluster.local:8265`` (in the
cluster), through the API server's service proxy (from outside: the kubeconfig's credentials), or
at a URL the caller chooses (``dashboard_url``); the token goes in the ``X-Ray-Authorization``
header (the one header an API server proxy passes through).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
from kubernetes.client.exceptions import ApiException

from ...errors import BackendError, Conflict, NotFound
from .kube import KubeClient, error_of
from .manifests import LABEL_CLUSTER, MANAGED_BY

TOKEN_KEY = "auth_token"
DASHBOARD_PORT = 8265

DashboardURL = Callable[[str, str], str]  # (RayCluster name, namespace) -> dashboard base URL


class RayToken:
    """The Ray token of one rayfleet cluster's RayClusters, kept once read."""

    def __init__(self, kube: KubeClient, namespace: str, cluster: str):
        self.kube, self.namespace, self.cluster = kube, namespace, cluster
        self.secret = f"{cluster}-ray-token"[:253]
        self._token: str | None = None

    def ensure(self) -> str:
        """The token, its Secret created if there is none yet."""
        if self._token:
            return self._token
        secret = self.kube.get_core("Secret", self.secret, self.namespace)
        if secret is None:
            token = secrets.token_urlsafe(32)
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": self.secret, "namespace": self.namespace, "labels": {MANAGED_BY: "rayfleet", LABEL_CLUSTER: self.cluster}},
                "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
            }
            try:
                self.kube.create_core(body)
            except Conflict:  # created concurrently: read it back
                secret = self.kube.get_core("Secret", self.secret, self.namespace)
            else:
                self._token = token
                return token
        data = ((secret or {}).get("data") or {}).get(TOKEN_KEY)
        if not data:
            raise BackendError(f"Secret {self.secret} has no {TOKEN_KEY!r} key")
        self._token = base64.b64decode(data).decode()
        return self._token

    def read(self) -> str | None:
        """The token if its Secret exists (nothing is created)."""
        if self._token:
            return self._token
        secret = self.kube.get_core("Secret", self.secret, self.namespace)
        data = ((secret or {}).get("data") or {}).get(TOKEN_KEY)
        if data:
            self._token = base64.b64decode(data).decode()
        return self._token

    def delete(self) -> None:
        self.kube.delete_core("Secret", self.secret, self.namespace)
        self._token = None


class Dashboard:
    """GETs of a RayCluster's dashboard API (``in_cluster``: by the head service's DNS name; else
    through the API server's service proxy, unless ``url`` says where)."""

    def __init__(self, kube: KubeClient, namespace: str, token: RayToken, *, in_cluster: bool,
                 url: DashboardURL | None = None, timeout: float = 10.0):
        self.kube, self.namespace, self.token = kube, namespace, token
        self.in_cluster, self.url, self.timeout = in_cluster, url, timeout

    def base(self, raycluster: str) -> str:
        if self.url is not None:
            return self.url(raycluster, self.namespace).rstrip("/")
        if self.in_cluster:
            return f"http://{raycluster}-head-svc.{self.namespace}.svc.cluster.local:{DASHBOARD_PORT}"
        host = self.kube.api_client.configuration.host.rstrip("/")
        return f"{host}/api/v1/namespaces/{self.namespace}/services/{raycluster}-head-svc:{DASHBOARD_PORT}/proxy"

    def get(self, raycluster: str, path: str) -> Any:
        """GET a dashboard path of a RayCluster; parsed JSON."""
        headers = {}
        token = self.token.read()
        if token:
            headers["X-Ray-Authorization"] = f"Bearer {token}"
        if self.url is None and not self.in_cluster:
            try:
                resp = self.kube.core.connect_get_namespaced_service_proxy_with_path(
                    f"{raycluster}-head-svc:{DASHBOARD_PORT}", self.namespace, path.lstrip("/"),
                    _headers=headers, _preload_content=False, _request_timeout=self.timeout,
                )
            except ApiException as e:
                raise error_of(e, f"dashboard of {raycluster}: GET {path}") from None
            return json.loads(resp.data or b"null")
        try:
            r = httpx.get(self.base(raycluster) + path, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise BackendError(f"dashboard of {raycluster}: GET {path}: {e}") from None
        if r.status_code == 404:
            raise NotFound(f"dashboard of {raycluster}: GET {path}: not found")
        if r.status_code != 200:
            raise BackendError(f"dashboard of {raycluster}: GET {path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()
