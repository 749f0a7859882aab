"""The Backend protocol on a GKE (or any Kubernetes) cluster running KubeRay.

Everything goes through the official ``kubernetes`` client: ``CustomObjectsApi`` for RayCluster,
RayJob, RayService and ProvisioningRequest, ``CoreV1Api`` for PodTemplates, package ConfigMaps, the
Ray token Secret and worker pods (capacity). Objects are validated against their CRD schemas before
they are sent.

Shape of a run (decided here, see :func:`.manifests.run_objects`): every attempt is one RayJob with
its **own RayCluster** (a head plus one worker group on the admitted pool, sized to the gang,
``shutdownAfterJobFinishes``). The gang's hosts come and go with the run, a stopped or failed run
frees all of them at once, ``activeDeadlineSeconds`` bounds it, queued DWS flex-start pools get a
ProvisioningRequest the workers consume, and it is the same RayJob Kueue would admit. The fleet
RayCluster of :meth:`KubeRayBackend.up` (a head plus autoscaled, initially empty, worker groups per
pool) is the cluster's interactive Ray endpoint.

Status: a RayJob's ``jobDeploymentStatus`` / ``jobStatus`` / ``reason`` map to :class:`RunState`
(:func:`map_rayjob_status`); logs are read from the Ray dashboard of the run's RayCluster
(:mod:`.dashboard`). Services are RayServices (:mod:`.services`).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client as k8s

from ...api import PoolSpec, Service
from ...config import PlatformConfig
from ...errors import BackendError, Conflict, NotFound
from ..base import (
    ClusterInfo,
    HostInfo,
    HostPhase,
    LaunchRequest,
    Notice,
    PoolCapacity,
    RunState,
    RunStatus,
    ServiceRunStatus,
)
from ..runtime_env import package_uris
from .checkpoint_request import NOTICE_KEY, notice_configmap, notice_configmap_name, notice_line, request_seq
from .dashboard import Dashboard, DashboardURL, RayToken
from .kube import KubeClient, api_client_for
from .manifests import (
    ANN_RUN_ID,
    ANN_SPEC_HASH,
    LABEL_CLUSTER,
    LABEL_ROLE,
    LABEL_RUN,
    MANAGED_BY,
    ServeAppBuilder,
    cluster_kuberay,
    cluster_pools,
    fleet_raycluster,
    is_queued_dws,
    k8s_name,
    package_mount,
    run_label,
    run_objects,
)
from .nodes import cordon_patch, epoch, host_notices, node_hosts, uncordon_patch
from .provisioning import apply_provisioning, pending_hosts
from .ratelimit import TokenBucket
from .scale_up import FIELD_SELECTOR as AUTOSCALER_EVENTS
from .scale_up import involved_pod, scale_up_answer
from .services import RayServices, validated
from .watch_cache import ClusterCache, Informer

log = logging.getLogger(__name__)

#: A ConfigMap holds at most 1 MiB in total; leave room for metadata and base64.
MAX_PACKAGE_BYTES = 700 * 1024


# ---------------------------------------------------------------- status mapping


def map_rayjob_status(status: dict[str, Any] | None) -> tuple[RunState, str]:
    """A RayJob's status -> (RunState, message).

    ``jobDeploymentStatus`` is KubeRay's lifecycle (New/Initializing/Running/Complete/Failed/
    Suspending/Suspended/Retrying/Waiting/ValidationFailed), ``jobStatus`` the Ray job's
    (PENDING/RUNNING/STOPPED/SUCCEEDED/FAILED), ``reason`` why a RayJob failed.
    """
    st = status or {}
    jds = st.get("jobDeploymentStatus") or ""
    js = st.get("jobStatus") or ""
    reason = st.get("reason") or ""
    msg = st.get("message") or ""
    if jds in ("", "New", "Initializing", "Waiting", "Retrying"):
        return RunState.PENDING, msg or ("retrying" if jds == "Retrying" else "creating the RayCluster")
    if jds == "Running":
        if js == "RUNNING":
            return RunState.RUNNING, msg
        if js == "SUCCEEDED":
            return RunState.SUCCEEDED, msg
        if js == "FAILED":
            return RunState.FAILED, msg or "the Ray job failed"
        if js == "STOPPED":
            return RunState.STOPPED, msg or "the Ray job was stopped"
        return RunState.PENDING, msg or "job submitted, waiting for workers"
    if jds == "Complete":
        if js == "FAILED":
            return RunState.FAILED, msg or "the Ray job failed"
        if js == "STOPPED":
            return RunState.STOPPED, msg or "the Ray job was stopped"
        return RunState.SUCCEEDED, msg
    if jds in ("Suspending", "Suspended"):
        return RunState.STOPPED, msg or "the RayJob was suspended"
    if jds == "ValidationFailed":
        return RunState.FAILED, msg or "KubeRay rejected the RayJob"
    if jds == "Failed":
        if reason == "DeadlineExceeded":
            return RunState.DEADLINE_EXCEEDED, msg or "activeDeadlineSeconds (maxRunDuration) exceeded"
        if reason == "PreRunningDeadlineExceeded":
            return RunState.LOST, msg or "the RayCluster did not start in time (capacity)"
        if reason in ("AppFailed", "SubmissionFailed", "ValidationFailed") or js == "FAILED":
            return RunState.FAILED, msg or f"the Ray job failed ({reason or js})"
        if js == "STOPPED":
            return RunState.STOPPED, msg or "the Ray job was stopped"
        return RunState.LOST, msg or f"the RayJob failed ({reason or 'unknown reason'})"
    return RunState.PENDING, msg or f"unknown jobDeploymentStatus {jds!r}"


def _unique(notices: tuple[Notice, ...]) -> tuple[Notice, ...]:
    """One notice per (kind, host), the earliest deadline first seen kept."""
    seen: dict[tuple[str, str], Notice] = {}
    for n in notices:
        seen.setdefault((n.kind, n.host), n)
    return tuple(seen.values())


# ---------------------------------------------------------------- the backend


class KubeRayBackend:
    """:class:`~rayfleet.backends.base.Backend` on KubeRay.

    ``api_client``: a ``kubernetes.client.ApiClient`` (default: from the Cluster's ``kuberay``
    settings: in-cluster, or a kubeconfig and context). ``dashboard_url``: how to reach a RayCluster's
    dashboard (default: the head service's cluster DNS name when in-cluster, else the API server's
    service proxy). ``serve_app``: the Serve application of a Service (:data:`.manifests.ServeAppBuilder`; the control
    service passes rayfleet.serve's, so KubeRay runs the same application as the local backend).
    Without it the backend runs jobs but refuses to deploy services. ``clock``: epoch seconds now
    (notice deadlines, cordon times).

    Capacity (:class:`~rayfleet.backends.base.CapacityBackend`): hosts are the Nodes of the pools
    (:mod:`.nodes`), plus the hosts queued DWS ProvisioningRequests still wait for; cordon is a
    Kubernetes cordon; a checkpoint request is written to the run's notice ConfigMap
    (:mod:`.checkpoint_request`). A pending run's capacity answer: its ProvisioningRequest's
    conditions on a queued DWS pool (:mod:`.provisioning`), else the cluster autoscaler's Events on
    its pods (:mod:`.scale_up`: "GCE out of resources" is a STOCKOUT).

    Requests: every API request waits for a token of the Cluster's ``kuberay.clientConnection``
    budget (:mod:`.ratelimit`; 300 QPS, burst 500 by default, as Kueue's). Reads: once
    :meth:`start_watching` is called (the controller does when it starts) the backend's run, pod,
    node and DWS reads answer from watches (:mod:`.watch_cache`); ``watch=False`` keeps asking the
    API server every time (the polling baseline of ``benchmarks/kuberay_scale.py``).
    """

    name = "kuberay"

    def __init__(
        self,
        config: PlatformConfig,
        api_client: k8s.ApiClient | None = None,
        *,
        dashboard_url: DashboardURL | None = None,
        serve_app: ServeAppBuilder | None = None,
        http_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        watch: bool = True,
    ):
        self.config = config
        self.clock = clock
        self.cluster, self.kuberay = cluster_kuberay(config)
        self.namespace = self.kuberay.namespace
        budget = self.kuberay.client_connection
        self.kube = KubeClient(api_client or api_client_for(self.kuberay), TokenBucket(budget.qps, budget.burst))
        self.cache: ClusterCache | None = None   # the watches (start_watching); None: every read asks the API server
        self._watch = watch
        self._hosts_memo: tuple[int, int, list[HostInfo]] | None = None
        self.token = RayToken(self.kube, self.namespace, self.cluster)
        self.auth_secret = self.token.secret
        self.dashboard = Dashboard(self.kube, self.namespace, self.token, in_cluster=self.kuberay.in_cluster, url=dashboard_url,
                                   timeout=http_timeout)
        self.services = RayServices(self.kube, config, self.namespace, self.token, self.dashboard, serve_app)
        # KubeRay submits a RayJob once its RayCluster is ready (every worker pod up), so the driver
        # waits for its placement group only while the hosts register with Ray.
        self.placement_timeout_s = config.cluster.spec.start_timeout if config.cluster else 600.0

    # ------------------------------------------------------------ selectors

    def _selector(self, role: str | None = None) -> str:
        sel = f"{MANAGED_BY}=rayfleet,{LABEL_CLUSTER}={self.cluster}"
        return f"{sel},{LABEL_ROLE}={role}" if role else sel

    @staticmethod
    def run_name(run_id: str) -> str:
        return k8s_name("rf", run_id)

    # ------------------------------------------------------------ lifecycle

    def _check_crds(self) -> None:
        try:
            served = self.kube.api_resources("ray.io", "v1")
        except NotFound:
            raise BackendError("the KubeRay CRDs (ray.io/v1) are not installed in the cluster") from None
        missing = [p for p in ("rayclusters", "rayjobs", "rayservices") if p not in served]
        if missing:
            raise BackendError(f"the cluster does not serve ray.io/v1 {', '.join(missing)}: install or upgrade the KubeRay operator")

    def _validated(self, obj: dict[str, Any]) -> dict[str, Any]:
        return validated(obj)

    def up(self) -> ClusterInfo:
        """Create the fleet RayCluster, or adopt it: an existing rayfleet-managed cluster whose spec
        differs from the config is replaced (optimistic concurrency, retried on conflicts); a cluster
        of that name not managed by rayfleet is refused."""
        self._check_crds()
        self.token.ensure()
        wanted = self._validated(fleet_raycluster(self.config, auth_secret=self.auth_secret))
        for _ in range(5):
            current = self.kube.find("RayCluster", self.cluster, self.namespace)
            if current is None:
                try:
                    self.kube.create(wanted)
                except Conflict:
                    continue  # created meanwhile: adopt it on the next pass
                return self._info()
            labels = (current.get("metadata") or {}).get("labels") or {}
            if labels.get(MANAGED_BY) != "rayfleet":
                raise Conflict(f"RayCluster {self.namespace}/{self.cluster} exists and is not managed by rayfleet")
            have = ((current.get("metadata") or {}).get("annotations") or {}).get(ANN_SPEC_HASH)
            if have == wanted["metadata"]["annotations"][ANN_SPEC_HASH]:
                return self._info()
            updated = dict(current)
            updated["metadata"] = {
                **current["metadata"],
                "labels": {**labels, **wanted["metadata"]["labels"]},
                "annotations": {**(current["metadata"].get("annotations") or {}), **wanted["metadata"]["annotations"]},
            }
            updated["spec"] = wanted["spec"]
            try:
                self.kube.replace(updated)
            except Conflict:
                continue  # changed since read: read again
            return self._info()
        raise Conflict(f"RayCluster {self.namespace}/{self.cluster} kept changing; gave up updating it")

    def _info(self) -> ClusterInfo:
        return ClusterInfo(name=self.cluster, backend=self.name, address=self.cluster, dashboard_url=self.dashboard.base(self.cluster))

    def info(self) -> ClusterInfo | None:
        if self.kube.find("RayCluster", self.cluster, self.namespace) is None:
            return None
        return self._info()

    def down(self) -> None:
        """Delete every object of this cluster: runs, services, DWS requests, packages, the fleet
        RayCluster and the token Secret."""
        for kind in ("RayJob", "RayService", "ProvisioningRequest", "RayCluster"):
            for obj in self.kube.list(kind, self.namespace, self._selector()):
                self.kube.delete(kind, obj["metadata"]["name"], self.namespace)
        for kind in ("PodTemplate", "ConfigMap"):
            for obj in self.kube.list_core(kind, self.namespace, self._selector()):
                self.kube.delete_core(kind, obj["metadata"]["name"], self.namespace)
        self.token.delete()

    # ------------------------------------------------------------ watches

    def start_watching(self, on_change: Callable[[], None] | None = None, *, timeout_seconds: int = 30,
                       sync_timeout: float = 30.0) -> None:
        """Keep this cluster's RayJobs, run worker pods, Nodes, DWS ProvisioningRequests and the
        cluster autoscaler's pod Events from watches (:mod:`.watch_cache`) from now on:
        ``run_status``, ``hosts``, ``capacity`` and the run lookups of ``launch``, ``stop`` and
        ``logs`` answer from memory, so a controller pass costs no API call per running job.
        ``on_change`` is called when a RayJob, Node, ProvisioningRequest or autoscaler Event
        changes (the control service passes its controller's wake). Waits up
        to ``sync_timeout`` for the first lists; a kind not listed yet is read as before."""
        if self.cache is not None or not self._watch:
            return
        self.cache = ClusterCache(
            self.kube, self.namespace, run_selector=self._selector("run"),
            pod_selector=f"{LABEL_CLUSTER}={self.cluster},ray.io/node-type=worker", dws_selector=self._selector("dws"),
            run_label=LABEL_RUN, event_selector=AUTOSCALER_EVENTS, event_index=involved_pod, on_change=on_change,
            timeout_seconds=timeout_seconds,
        )
        self.cache.start()
        if not self.cache.wait_synced(sync_timeout):
            log.warning("the KubeRay backend's watches did not list within %.0fs; reading the API server until they do", sync_timeout)

    def stop_watching(self) -> None:
        if self.cache is not None:
            self.cache.stop()
            self.cache = None

    def _informer(self, kind: str) -> Informer | None:
        """The kind's informer once it has listed, else None (read the API server)."""
        if self.cache is None:
            return None
        inf = {"RayJob": self.cache.rayjobs, "Pod": self.cache.pods, "Node": self.cache.nodes,
               "ProvisioningRequest": self.cache.provreqs, "Event": self.cache.events}[kind]
        return inf if inf.synced.is_set() else None

    def _nodes(self) -> tuple[list[dict[str, Any]], int | None]:
        """The Nodes, and the version of what was read (None: read from the API server)."""
        inf = self._informer("Node")
        if inf is None:
            return self.kube.list_nodes(), None
        version = inf.generation   # read before the items: a change in between makes the next read work it out again
        return inf.items(), version

    # ------------------------------------------------------------ capacity

    def _pool_specs(self) -> dict[str, PoolSpec]:
        return {name: self.config.pools[name].spec for name in cluster_pools(self.config)}

    def _busy_nodes(self) -> set[str]:
        """Nodes holding a gang or a service replica: a Running rayfleet run/service worker pod."""
        inf = self._informer("Pod")
        pods = inf.items() if inf is not None else self.kube.list_core("Pod", self.namespace, f"{LABEL_CLUSTER}={self.cluster},ray.io/node-type=worker")
        busy = set()
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            node = (pod.get("spec") or {}).get("nodeName")
            if node and labels.get(LABEL_ROLE) in ("run", "service") and (pod.get("status") or {}).get("phase") in ("Pending", "Running"):
                busy.add(node)
        return busy

    def _awaited_hosts(self) -> list[HostInfo]:
        """The hosts queued DWS requests still wait for, one PROVISIONING entry per pod of each request
        (no Node exists for them yet; they count as provisioning capacity until the nodes register)."""
        out = []
        inf = self._informer("ProvisioningRequest")
        for pr in inf.items() if inf is not None else self.kube.list("ProvisioningRequest", self.namespace, self._selector("dws")):
            meta = pr.get("metadata") or {}
            pool = (meta.get("labels") or {}).get("rayfleet.io/pool")
            if pool is None:
                continue
            for i in range(pending_hosts(pr)):
                out.append(HostInfo(f"{meta['name']}-{i}", pool, HostPhase.PROVISIONING, since=epoch(meta.get("creationTimestamp")),
                                    healthy=False, message=f"ProvisioningRequest {meta['name']}: waiting for DWS capacity"))
        return out

    def hosts(self) -> list[HostInfo]:
        """The pools' Nodes, with their phase (:mod:`.nodes`), and the hosts queued DWS requests
        still wait for (PROVISIONING, no node yet)."""
        return self._node_hosts() + self._awaited_hosts()

    def _node_hosts(self) -> list[HostInfo]:
        """The pools' Nodes as hosts; worked out once per change of the watched Nodes."""
        nodes, version = self._nodes()
        if version is not None and self._hosts_memo is not None and self._hosts_memo[:2] == (id(self.cache), version):
            return list(self._hosts_memo[2])
        hosts = node_hosts(nodes, self._pool_specs())
        if version is not None:
            self._hosts_memo = (id(self.cache), version, hosts)
        return list(hosts)

    def capacity(self) -> dict[str, PoolCapacity]:
        """Per pool, from its Nodes: hosts configured (``maxReplicas`` x hosts per slice), alive
        (Ready: READY, CORDONED or DRAINING), free (READY with no run or service worker pod on it),
        provisioning (nodes not Ready yet, and hosts queued DWS requests wait for) and cordoned
        (cordoned or draining)."""
        busy = self._busy_nodes()
        counts: dict[str, dict[str, int]] = {}
        for h in self.hosts():
            c = counts.setdefault(h.pool, {"ready": 0, "free": 0, "provisioning": 0, "cordoned": 0})
            if h.phase in (HostPhase.READY, HostPhase.CORDONED, HostPhase.DRAINING):
                c["ready"] += 1
            if h.phase == HostPhase.READY and h.healthy and h.name not in busy:
                c["free"] += 1
            if h.phase == HostPhase.PROVISIONING:
                c["provisioning"] += 1
            if h.phase in (HostPhase.CORDONED, HostPhase.DRAINING):
                c["cordoned"] += 1
        out = {}
        for name, spec in self._pool_specs().items():
            c = counts.get(name, {})
            out[name] = PoolCapacity(
                pool=name, hosts=spec.max_hosts, ready_hosts=c.get("ready", 0), free_hosts=c.get("free", 0),
                provisioning_hosts=c.get("provisioning", 0), cordoned_hosts=c.get("cordoned", 0),
            )
        return out

    def cordon(self, host: str, reason: str) -> None:
        """``kubectl cordon`` (``spec.unschedulable: true``) plus the reason and time in the node's
        ``rayfleet.io/cordoned`` / ``rayfleet.io/cordoned-at`` annotations. Repair on GKE is node
        auto-repair's (it recreates nodes whose conditions fail); a node cordoned for failing runs
        alone comes back through :meth:`uncordon`. A node that is gone is left alone."""
        try:
            self.kube.patch_core("Node", host, "", cordon_patch(reason, self.clock()))
        except NotFound:
            log.info("cordon %s: the node is gone", host)

    def uncordon(self, host: str) -> None:
        """``kubectl uncordon`` (``spec.unschedulable: false``), rayfleet's annotations removed."""
        try:
            self.kube.patch_core("Node", host, "", uncordon_patch())
        except NotFound:
            log.info("uncordon %s: the node is gone", host)

    def request_checkpoint(self, run_id: str) -> None:
        """Write the next checkpoint request (``{"seq": n, "at": <now>}``) to the run's notice
        ConfigMap, mounted in its pods at ``$RAYFLEET_CHECKPOINT_REQUEST`` (:mod:`.checkpoint_request`).
        No-op for a run that is gone."""
        if self._run_job(run_id) is None:
            return
        name = notice_configmap_name(self.run_name(run_id))
        try:
            seq = request_seq(self.kube.get_core("ConfigMap", name, self.namespace)) + 1
            self.kube.patch_core("ConfigMap", name, self.namespace, {"data": {NOTICE_KEY: notice_line(self.clock(), seq)}})
        except NotFound:  # launched before notices existed, or deleted: make it
            self.kube.create_core(self._validated(notice_configmap(name, self.namespace, self._notice_labels(run_id), self.clock())))

    def _notice_labels(self, run_id: str) -> dict[str, str]:
        return {MANAGED_BY: "rayfleet", LABEL_CLUSTER: self.cluster, LABEL_ROLE: "notice", LABEL_RUN: run_label(run_id)}

    def _run_pods(self, run_id: str) -> list[dict[str, Any]]:
        """The run's worker pods."""
        inf = self._informer("Pod")
        if inf is not None:
            return inf.by_label(run_label(run_id))
        return self.kube.list_core("Pod", self.namespace, f"{LABEL_RUN}={run_label(run_id)},ray.io/node-type=worker")

    def _autoscaler_events(self, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The cluster autoscaler's Events on ``pods`` (:mod:`.scale_up`)."""
        names = [(p.get("metadata") or {}).get("name", "") for p in pods]
        inf = self._informer("Event")
        if inf is not None:
            return [e for n in names for e in inf.by_label(n)]
        wanted = set(names)
        events = self.kube.list_with_version("Event", self.namespace, field_selector=AUTOSCALER_EVENTS)[0]
        return [e for e in events if involved_pod(e) in wanted]

    def _host_notices(self, pool: str, hosts: tuple[str, ...]) -> tuple[Notice, ...]:
        if not hosts or pool not in self.config.pools:
            return ()
        spec = self.config.pools[pool].spec
        now = self.clock()
        known = {h.name: h for h in self._node_hosts()}
        return tuple(n for h in hosts if h in known for n in host_notices(known[h], spec, now))

    # ------------------------------------------------------------ runs

    def _packages(self, runtime_env: dict[str, Any]) -> list[str]:
        uris = [uri for _, uri in package_uris(runtime_env)]
        for uri in uris:
            cm, _, _ = package_mount(uri)
            if self.kube.get_core("ConfigMap", cm, self.namespace) is None:
                raise BackendError(f"runtime_env package {uri} was not uploaded (no ConfigMap {cm})")
        return uris

    def launch(self, req: LaunchRequest) -> str:
        """Create the run's PodTemplate + ProvisioningRequest (queued DWS pools) and RayJob.
        Idempotent: a RayJob that already carries this run id is the launch."""
        name = self.run_name(req.run_id)
        inf = self._informer("RayJob")
        # watched: a RayJob the watch does not hold is created (a Conflict below finds one that exists)
        existing = inf.get(name) if inf is not None else self.kube.find("RayJob", name, self.namespace)
        if existing is not None:
            return self._same_run(existing, req.run_id)
        packages = self._packages(req.runtime_env)
        self.token.ensure()
        try:
            objs = run_objects(
                req, cluster=self.cluster, kuberay=self.kuberay, packages=packages, auth_secret=self.auth_secret,
                placement_timeout_s=self.placement_timeout_s,
            )
        except ValueError as e:
            raise BackendError(f"run {req.run_id}: {e}") from None
        for obj in objs.objects():
            self._validated(obj)
        if objs.pod_template is not None:
            try:
                self.kube.create_core(objs.pod_template)
            except Conflict:
                pass  # left by an interrupted launch of this run (names derive from the run id)
        if objs.provisioning_request is not None:
            try:
                self.kube.create(objs.provisioning_request)
            except Conflict:
                pass
        notice = self._validated(notice_configmap(notice_configmap_name(name), self.namespace, self._notice_labels(req.run_id)))
        try:
            self.kube.create_core(notice)
        except Conflict:
            pass
        try:
            created = self.kube.create(objs.rayjob)
        except Conflict:  # made meanwhile (another replica, an interrupted launch): adopt it if it is this run
            current = self.kube.get("RayJob", name, self.namespace)
            run_id = self._same_run(current, req.run_id)
            if inf is not None:
                inf.seen(current, created=True)
            return run_id
        if inf is not None:
            inf.seen(created, created=True)   # known before its watch event: never reported missing
        return req.run_id

    @staticmethod
    def _same_run(obj: dict[str, Any], run_id: str) -> str:
        have = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANN_RUN_ID)
        if have != run_id:
            raise Conflict(f"RayJob {obj['metadata']['name']} belongs to run {have!r}, not {run_id!r}")
        return run_id

    def _run_job_object(self, name: str) -> dict[str, Any] | None:
        """The RayJob ``name``: from the watch when it knows it; a run it has not seen (nor seen
        deleted) is asked for once, so a run is never reported missing on the cache's word alone."""
        inf = self._informer("RayJob")
        if inf is None:
            return self.kube.find("RayJob", name, self.namespace)
        job = inf.get(name)
        if job is None and not inf.gone(name):
            job = self.kube.find("RayJob", name, self.namespace)
            if job is None:
                inf.forget(name)
            else:
                inf.seen(job)
        return job

    def _run_job(self, run_id: str) -> dict[str, Any] | None:
        job = self._run_job_object(self.run_name(run_id))
        if job is None:
            return None
        if ((job.get("metadata") or {}).get("annotations") or {}).get(ANN_RUN_ID) != run_id:
            return None
        return job

    def stop(self, run_id: str, *, reason: str = "stopped") -> None:
        """Delete the run's RayJob (KubeRay stops the Ray job and deletes its RayCluster) and its
        DWS request. No-op for a run that is gone."""
        self._delete_run(run_id, f"stopping run {run_id} ({reason})")

    def release_run(self, run_id: str) -> None:
        """An ended run whose end (and logs) the control plane has stored: its RayJob (with the
        RayCluster it owns), notice ConfigMap and DWS request go, so they do not pile up."""
        self._delete_run(run_id, f"releasing ended run {run_id}")

    def _delete_run(self, run_id: str, why: str) -> None:
        name = self.run_name(run_id)
        job = self._run_job(run_id)
        if job is not None:
            log.info("%s", why)
            self.kube.delete("RayJob", name, self.namespace)
            inf = self._informer("RayJob")
            if inf is not None:
                inf.forget(name)
        if self._may_have_dws(name, job):
            self.kube.delete("ProvisioningRequest", name, self.namespace)
            self.kube.delete_core("PodTemplate", f"{name}-workers", self.namespace)
            dws = self._informer("ProvisioningRequest")
            if dws is not None:
                dws.forget(name)
        self.kube.delete_core("ConfigMap", notice_configmap_name(name), self.namespace)

    def _may_have_dws(self, name: str, job: dict[str, Any] | None) -> bool:
        """Whether a run may have a PodTemplate + ProvisioningRequest: its pool is queued DWS, the
        watch holds its request, or the run (its RayJob gone) or its pool is not known."""
        dws = self._informer("ProvisioningRequest")
        if job is None or (dws is not None and dws.get(name) is not None):
            return True
        pool = ((job.get("metadata") or {}).get("labels") or {}).get("rayfleet.io/pool", "")
        return pool not in self.config.pools or is_queued_dws(self.config.pools[pool].spec)

    def run_status(self, run_id: str) -> RunStatus | None:
        job = self._run_job(run_id)
        if job is None:
            return None
        return self._status_of(run_id, job)

    def _provisioning_request(self, run_id: str) -> dict[str, Any] | None:
        name = self.run_name(run_id)
        inf = self._informer("ProvisioningRequest")
        if inf is not None:
            return inf.get(name)
        return self.kube.find("ProvisioningRequest", name, self.namespace)

    def _status_of(self, run_id: str, job: dict[str, Any]) -> RunStatus:
        """A run's status from its RayJob, its worker pods' nodes, its DWS request and those nodes'
        notices: the one rule of ``run_status`` and ``watch_runs``."""
        status = job.get("status") or {}
        state, message = map_rayjob_status(status)
        pool = ((job.get("metadata") or {}).get("labels") or {}).get("rayfleet.io/pool", "")
        hosts: tuple[str, ...] = ()
        notices: tuple[Notice, ...] = ()
        if not state.terminal:
            pods = self._run_pods(run_id)
            hosts = tuple(sorted({n for p in pods if (n := (p.get("spec") or {}).get("nodeName"))}))
            provreq = self._provisioning_request(run_id)
            if provreq is not None and pool in self.config.pools:
                outcome = apply_provisioning(
                    provreq, state, message if status.get("message") or state != RunState.PENDING else "",
                    spec=self.config.pools[pool].spec, hosts=hosts, now=self.clock(),
                )
                state, message, notices = outcome.state, outcome.message, outcome.notices
            elif state == RunState.PENDING and len(hosts) < len(pods):
                answer = scale_up_answer(pods, self._autoscaler_events(pods))
                if answer is not None:
                    state, message = answer.state, answer.message
            if state == RunState.RUNNING:
                notices += self._host_notices(pool, hosts)
        info = status.get("rayJobInfo") or {}
        started = epoch(info.get("startTime")) if state != RunState.PENDING else None
        if started is None and state not in (RunState.PENDING,):
            started = epoch(status.get("startTime"))
        finished = epoch(status.get("endTime") or info.get("endTime")) if state.terminal else None
        return RunStatus(run_id=run_id, state=state, message=message, started_at=started, finished_at=finished,
                         node_ids=hosts, notices=_unique(notices), hosts=hosts)

    def list_runs(self) -> list[str]:
        out = []
        inf = self._informer("RayJob")
        for job in inf.items() if inf is not None else self.kube.list("RayJob", self.namespace, self._selector("run")):
            run_id = ((job.get("metadata") or {}).get("annotations") or {}).get(ANN_RUN_ID)
            if run_id:
                out.append(run_id)
        return sorted(out)

    def watch_runs(self, *, timeout_seconds: int = 30, resource_version: str | None = None) -> Iterator[tuple[str, RunStatus | None]]:
        """(run id, status) as RayJobs change; status None when a RayJob is deleted. A status is what
        ``run_status`` would answer for that RayJob: hosts, DWS outcome and notices included."""
        for event_type, obj in self.kube.watch(
            "RayJob", self.namespace, label_selector=self._selector("run"), resource_version=resource_version, timeout_seconds=timeout_seconds
        ):
            run_id = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANN_RUN_ID)
            if not run_id:
                continue
            if event_type == "DELETED":
                yield run_id, None
                continue
            yield run_id, self._status_of(run_id, obj)

    # ------------------------------------------------------------ dashboard

    def logs(self, run_id: str) -> str:
        """The Ray job's driver output so far, from its RayCluster's dashboard."""
        job = self._run_job(run_id)
        if job is None:
            raise NotFound(f"run {run_id} is not known to the cluster")
        status = job.get("status") or {}
        raycluster = status.get("rayClusterName")
        submission = status.get("jobId") or (job.get("spec") or {}).get("jobId")
        if not raycluster or not submission:
            return ""
        body = self.dashboard.get(raycluster, f"/api/jobs/{submission}/logs")
        return (body or {}).get("logs") or ""

    # ------------------------------------------------------------ packages

    def upload_package(self, uri: str, data: bytes) -> None:
        """Keep a runtime_env package in a ConfigMap; runs that name it mount it into their RayJob
        submitter pod, whose ``ray job submit`` uploads it to the run's own RayCluster."""
        if len(data) > MAX_PACKAGE_BYTES:
            raise BackendError(
                f"package {uri} is {len(data) / 2**20:.1f} MiB; the KubeRay backend keeps packages in ConfigMaps "
                f"(at most {MAX_PACKAGE_BYTES // 1024} KiB): use a gs:// working_dir for larger code"
            )
        cm, key, _ = package_mount(uri)
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": cm,
                "namespace": self.namespace,
                "labels": {MANAGED_BY: "rayfleet", LABEL_CLUSTER: self.cluster, LABEL_ROLE: "package"},
                "annotations": {"rayfleet.io/package-uri": uri},
            },
            "binaryData": {key: base64.b64encode(data).decode()},
            "immutable": True,
        }
        self._validated(body)
        try:
            self.kube.create_core(body)
        except Conflict:
            pass  # package names are content hashes: the same name holds the same bytes

    # ------------------------------------------------------------ services

    def deploy_service(self, svc: Service, pool: str, pool_spec: PoolSpec, replicas: int) -> None:
        """Create or update the Service's RayService with at most ``replicas`` replicas. Idempotent."""
        self.services.deploy(svc, pool, replicas)

    def service_status(self, name: str) -> ServiceRunStatus | None:
        return self.services.status(name)

    def delete_service(self, name: str) -> None:
        self.services.delete(name)
