"""Serve operations on a running Ray cluster: deploy, scale, observe and delete a Service.

The deployer talks to the cluster the way ``serve deploy`` and KubeRay's RayService do, without
being a Ray driver:

* Serve's declarative REST API on the Ray dashboard (``PUT``/``GET /api/serve/applications/``):
  the whole set of declaratively deployed applications is one config; :meth:`ServeDeployer.deploy`
  reads it, replaces or adds the Service's application and puts it back (applications deployed
  with ``serve.run`` are left alone by Serve);
* the GCS internal KV, through Ray's ``GcsClient`` (a gRPC client, not ``ray.init``), for the
  uncapped "wanted" count that :class:`~rayfleet.serve.policy.QuotaAwarePolicy` publishes.

Not calling ``ray.init`` keeps the control service independent of the cluster's lifetime: a driver
whose GCS goes away is terminated by Ray, which must never take the control service with it.

Each Service is one Serve application named after the Service, at ``spec.routePrefix``; its ingress
deployment :data:`~rayfleet.serve.names.GROUP_DEPLOYMENT` carries the group placement (in the builder
args, fixed per spec) and the autoscaling config whose ``max_replicas`` is the quota cap (a
deployment override: changing it restarts no replica). :func:`service_app_config` is the same
``ServeApplicationSchema`` dict a KubeRay ``RayService.spec.serveConfigV2`` would carry.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..api import PoolSpec, Service
from .names import BUILDER_IMPORT_PATH, GROUP_DEPLOYMENT, KV_NAMESPACE, POLICY_IMPORT_PATH, kv_key
from .placement import GroupPlacement, group_placement


class ServeDeployError(RuntimeError):
    """Serve refused or failed an operation (the message is Serve's)."""


@dataclass(frozen=True)
class ServeOptions:
    """Cluster-wide Serve settings of a deployer (not part of a Service spec)."""

    http_host: str = "127.0.0.1"          # where the Serve proxy binds
    http_port: int = 8000                 # the Serve proxy port (pick a free one in tests)
    public_host: str | None = None        # host name in service URLs (default: http_host, 0.0.0.0 -> 127.0.0.1)
    proxy_location: str = "HeadOnly"     # one proxy; simulated hosts share one IP, so per-node proxies would clash
    cpu_per_bundle: float | None = 0.1   # Ray CPUs per bundle (None: the spec's resourcesPerHost.cpu)
    health_check_period_s: float = 2.0
    health_check_timeout_s: float = 10.0
    graceful_shutdown_wait_loop_s: float = 0.5
    graceful_shutdown_timeout_s: float = 30.0
    max_ongoing_requests: int | None = None
    metrics_interval_s: float | None = None   # Serve's defaults when None
    look_back_period_s: float | None = None
    max_constructor_retry_count: int | None = None

    @property
    def url_host(self) -> str:
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host


def base_replicas(service: Service) -> int:
    """Groups the Service holds quota for as its base workload: ``minReplicas``, at least 1.

    Serve's autoscaler starts a replica for the first request of a scaled-to-zero deployment
    without consulting any policy (its cold-start path), and ``max_replicas`` cannot be 0; so a
    Service with ``minReplicas: 0`` holds quota for one group even while it runs none.
    """
    return max(service.spec.autoscaling.min_replicas, 1)


def replica_cap(service: Service, granted: int) -> int:
    """Serve ``max_replicas`` for ``granted`` groups: within [base, maxReplicas]."""
    a = service.spec.autoscaling
    return max(base_replicas(service), min(a.max_replicas, granted))


def service_url(service: Service, options: ServeOptions) -> str:
    prefix = service.spec.route_prefix.rstrip("/")
    return f"http://{options.url_host}:{options.http_port}{prefix}"


def autoscaling_config(service: Service, cap: int, options: ServeOptions) -> dict[str, Any]:
    a = service.spec.autoscaling
    # No ``initial_replicas``: Serve resets the target to it on *every* config update, so each
    # change of the quota cap would first drop a loaded service to that count. Without it Serve
    # keeps its current target and only clamps it to the new bounds (a cap change stops or adds
    # exactly the difference). A new deployment starts at ``min_replicas`` (0: at the first request).
    cfg: dict[str, Any] = {
        "min_replicas": a.min_replicas,
        "max_replicas": cap,
        "target_ongoing_requests": a.target_ongoing_requests,
        "upscale_delay_s": a.upscale_delay,
        "downscale_delay_s": a.downscale_delay,
        "policy": {
            "policy_function": POLICY_IMPORT_PATH,
            "policy_kwargs": {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas},
        },
    }
    # The Service's own windows win; the deployer's options are the cluster's defaults.
    interval = a.metrics_interval if a.metrics_interval is not None else options.metrics_interval_s
    look_back = a.look_back_period if a.look_back_period is not None else options.look_back_period_s
    if interval is not None:
        cfg["metrics_interval_s"] = interval
    if look_back is not None:
        cfg["look_back_period_s"] = look_back
    return cfg


def service_app_config(
    service: Service,
    pool_name: str,
    pool_spec: PoolSpec,
    *,
    granted: int,
    options: ServeOptions | None = None,
    node_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Serve application (``ServeApplicationSchema``) of ``service`` on ``pool_name``."""
    options = options or ServeOptions()
    spec = service.spec
    placement = group_placement(spec, pool_name, pool_spec, cpu_per_bundle=options.cpu_per_bundle, node_labels=node_labels)
    deployment: dict[str, Any] = {
        "name": GROUP_DEPLOYMENT,
        "autoscaling_config": autoscaling_config(service, replica_cap(service, granted), options),
        "health_check_period_s": options.health_check_period_s,
        "health_check_timeout_s": options.health_check_timeout_s,
        "graceful_shutdown_wait_loop_s": options.graceful_shutdown_wait_loop_s,
        "graceful_shutdown_timeout_s": options.graceful_shutdown_timeout_s,
    }
    if options.max_ongoing_requests is not None:
        deployment["max_ongoing_requests"] = options.max_ongoing_requests
    if options.max_constructor_retry_count is not None:
        deployment["max_constructor_retry_count"] = options.max_constructor_retry_count
    app: dict[str, Any] = {
        "name": service.name,
        "route_prefix": spec.route_prefix,
        "import_path": BUILDER_IMPORT_PATH,
        "args": {
            "importPath": spec.import_path,
            "args": spec.args,
            "placement": placement.to_dict(),
            "deploymentName": GROUP_DEPLOYMENT,
        },
        "deployments": [deployment],
    }
    if spec.runtime_env:
        app["runtime_env"] = spec.runtime_env
    return app


# ---------------------------------------------------------------- observed state


@dataclass(frozen=True)
class GroupReplica:
    replica_id: str
    state: str
    node_id: str | None
    actor_id: str | None
    pid: int | None


@dataclass(frozen=True)
class ServeAppStatus:
    """What Serve (and the policy) report about one Service's application."""

    name: str
    exists: bool
    app_status: str = "NOT_STARTED"       # Serve ApplicationStatus
    deployment_status: str | None = None  # Serve DeploymentStatus of the group deployment
    message: str = ""
    url: str | None = None
    route_prefix: str | None = None
    target: int = 0                       # Serve's (capped) target replica count
    cap: int | None = None                # max_replicas in force
    running: int = 0                      # replicas RUNNING: groups whole and routed to
    replicas: tuple[GroupReplica, ...] = ()
    wanted: int | None = None             # the policy's uncapped decision (None until published)
    autoscaling: dict[str, Any] = field(default_factory=dict)  # the policy's last record

    @property
    def starting(self) -> int:
        return sum(1 for r in self.replicas if r.state in ("STARTING", "PENDING_MIGRATION", "RECOVERING"))

    @property
    def stopping(self) -> int:
        return sum(1 for r in self.replicas if r.state == "STOPPING")


class ServeDeployer:
    """Deploy Services as Serve applications on one Ray cluster (REST + GCS KV, no ray.init).

    ``dashboard_url``: the Ray dashboard (``http://HOST:8265``). ``gcs_address``: ``HOST:PORT`` of
    the GCS (for the policy's KV records; optional: without it ``wanted`` is None). ``auth_token``:
    the cluster's token when ``RAY_AUTH_MODE=token`` (default: Ray's own lookup, ``RAY_AUTH_TOKEN``
    or ``~/.ray/auth_token``).
    """

    def __init__(
        self,
        dashboard_url: str,
        gcs_address: str | None = None,
        *,
        options: ServeOptions | None = None,
        auth_token: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.dashboard_url = dashboard_url.rstrip("/")
        self.gcs_address = gcs_address
        self.options = options or ServeOptions()
        self._lock = threading.Lock()
        self._gcs: Any = None
        headers = {"Content-Type": "application/json"}
        if auth_token:
            headers["Authorization"] = f"Bearer {auth_token}"
        else:
            headers.update(_ray_auth_headers())
        self._http = httpx.Client(base_url=self.dashboard_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServeDeployer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ REST

    def _details(self, api_type: str | None = None) -> dict[str, Any]:
        params = {"api_type": api_type} if api_type else None
        r = self._http.get("/api/serve/applications/", params=params)
        if r.status_code != 200:
            raise ServeDeployError(f"GET /api/serve/applications/: HTTP {r.status_code}: {r.text[:500]}")
        return r.json()

    def _declarative_apps(self) -> dict[str, dict[str, Any]]:
        apps = self._details("declarative").get("applications") or {}
        return {name: a["deployed_app_config"] for name, a in apps.items() if a.get("deployed_app_config")}

    def _put(self, apps: list[dict[str, Any]]) -> None:
        body = {
            "proxy_location": self.options.proxy_location,
            "http_options": {"host": self.options.http_host, "port": self.options.http_port},
            "applications": apps,
        }
        r = self._http.put("/api/serve/applications/", content=json.dumps(body))
        if r.status_code != 200:
            raise ServeDeployError(f"PUT /api/serve/applications/: HTTP {r.status_code}: {r.text[:2000]}")

    # ------------------------------------------------------------ operations

    def deploy(
        self,
        service: Service,
        pool_name: str,
        pool_spec: PoolSpec,
        granted_replicas: int,
        *,
        node_labels: dict[str, str] | None = None,
    ) -> bool:
        """Deploy ``service`` on ``pool_name`` with at most ``granted_replicas`` groups.

        Idempotent: returns False (and sends nothing) when Serve already has this exact config.
        Changing only ``granted_replicas`` is a lightweight update (no replica restarts); a changed
        spec or pool is a rolling update by Serve.
        """
        app = service_app_config(
            service, pool_name, pool_spec, granted=granted_replicas, options=self.options, node_labels=node_labels
        )
        with self._lock:
            current = self._declarative_apps()
            if _same_app(current.get(service.name), app):
                return False
            apps = [cfg for name, cfg in current.items() if name != service.name]
            self._put([*apps, app])
            return True

    def set_replica_cap(self, name: str, cap: int) -> bool:
        """Change only ``max_replicas`` of a deployed Service (the quota cap). False if unchanged."""
        if cap < 1:
            raise ValueError("cap: Serve needs max_replicas >= 1")
        with self._lock:
            current = self._declarative_apps()
            if name not in current:
                raise ServeDeployError(f"service {name!r} is not deployed")
            app = json.loads(json.dumps(current[name]))
            dep = _group_deployment(app)
            auto = dep["autoscaling_config"]
            cap = max(cap, int(auto.get("min_replicas", 0)), 1)
            if auto.get("max_replicas") == cap:
                return False
            auto["max_replicas"] = cap
            self._put([cfg if n != name else app for n, cfg in current.items()])
            return True

    def delete(self, name: str) -> bool:
        """Remove the Service's application (Serve drains its replicas). False if it was not there."""
        with self._lock:
            current = self._declarative_apps()
            if name not in current:
                return False
            self._put([cfg for n, cfg in current.items() if n != name])
            return True

    def shutdown(self) -> None:
        """Shut Serve down on the cluster (every application, the controller and the proxies), as
        ``serve shutdown`` does. Safe when Serve is not running."""
        with self._lock:
            r = self._http.delete("/api/serve/applications/")
            if r.status_code != 200:
                raise ServeDeployError(f"DELETE /api/serve/applications/: HTTP {r.status_code}: {r.text[:500]}")

    def list(self) -> list[str]:
        """Names of the Services (declaratively deployed applications) Serve runs."""
        return sorted(self._declarative_apps())

    def status(self, name: str) -> ServeAppStatus:
        """Serve's view of the Service's application, plus the policy's wanted count."""
        apps = self._details().get("applications") or {}
        app = apps.get(name)
        if app is None:
            return ServeAppStatus(name=name, exists=False)
        dep = (app.get("deployments") or {}).get(GROUP_DEPLOYMENT) or {}
        replicas = tuple(
            GroupReplica(
                replica_id=r.get("replica_id", ""),
                state=r.get("state", ""),
                node_id=r.get("node_id"),
                actor_id=r.get("actor_id"),
                pid=r.get("pid"),
            )
            for r in dep.get("replicas") or []
        )
        auto = ((dep.get("deployment_config") or {}).get("autoscaling_config")) or {}
        record = self.autoscaling_record(name)
        prefix = app.get("route_prefix")
        url = None
        if prefix is not None:
            url = f"http://{self.options.url_host}:{self.options.http_port}{prefix.rstrip('/')}"
        return ServeAppStatus(
            name=name,
            exists=True,
            app_status=app.get("status", ""),
            deployment_status=dep.get("status"),
            message=(dep.get("message") or app.get("message") or ""),
            url=url,
            route_prefix=prefix,
            target=int(dep.get("target_num_replicas") or 0),
            cap=auto.get("max_replicas"),
            running=sum(1 for r in replicas if r.state == "RUNNING"),
            replicas=replicas,
            wanted=record.get("wanted") if record else None,
            autoscaling=record or {},
        )

    def wait(self, name: str, predicate: Any, *, timeout_s: float = 120.0, interval_s: float = 0.5) -> ServeAppStatus:
        """Poll :meth:`status` until ``predicate(status)`` holds; raises TimeoutError with the last status."""
        deadline = time.monotonic() + timeout_s
        st = self.status(name)
        while not predicate(st):
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {name!r}: condition not met after {timeout_s}s; last status {st}")
            if st.app_status == "DEPLOY_FAILED":
                raise ServeDeployError(f"service {name!r} failed to deploy: {st.message}")
            time.sleep(interval_s)
            st = self.status(name)
        return st

    # ------------------------------------------------------------ GCS KV

    def autoscaling_record(self, name: str) -> dict[str, Any] | None:
        """The policy's last record for the Service (wanted, request total, target, cap, time)."""
        if not self.gcs_address:
            return None
        try:
            if self._gcs is None:
                from ray._raylet import GcsClient

                self._gcs = GcsClient(address=self.gcs_address)
            raw = self._gcs.internal_kv_get(kv_key(name, GROUP_DEPLOYMENT).encode(), KV_NAMESPACE.encode(), timeout=5)
        except Exception:
            self._gcs = None
            return None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None


def _group_deployment(app: dict[str, Any]) -> dict[str, Any]:
    for dep in app.get("deployments") or []:
        if dep.get("name") == GROUP_DEPLOYMENT:
            return dep
    raise ServeDeployError(f"application {app.get('name')!r} has no {GROUP_DEPLOYMENT!r} deployment")


def _same_app(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """True when Serve's stored config already says what ``wanted`` says (every key ``wanted`` sets)."""
    if current is None:
        return False

    def covers(have: Any, want: Any) -> bool:
        if isinstance(want, dict):
            return isinstance(have, dict) and all(covers(have.get(k), v) for k, v in want.items())
        if isinstance(want, list):
            return isinstance(have, list) and len(have) == len(want) and all(covers(h, w) for h, w in zip(have, want, strict=True))
        if isinstance(want, float | int) and isinstance(have, float | int):
            return float(have) == float(want)
        return have == want

    return covers(current, wanted)


def _ray_auth_headers() -> dict[str, str]:
    """Ray's own Authorization header when token auth is on (what JobSubmissionClient sends)."""
    try:
        from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

        return dict(get_auth_headers_if_auth_enabled({}))
    except Exception:
        return {}


def placement_of(service: Service, pool_name: str, pool_spec: PoolSpec, options: ServeOptions | None = None) -> GroupPlacement:
    """The group placement a deployer would use (for status pages and tests)."""
    opts = options or ServeOptions()
    return group_placement(service.spec, pool_name, pool_spec, cpu_per_bundle=opts.cpu_per_bundle)
