"""rayfleet specs -> ``ray.io/v1`` objects for GKE: RayCluster, RayJob, RayService, and the
PodTemplate + ProvisioningRequest pair of a queued DWS flex-start launch.

Placement on GKE (one pod = one host: a worker pod asks for every accelerator of its host and
:data:`HOST_FRACTION` of its CPU and memory):

=================  ==========================================================================
pool               pod selection
=================  ==========================================================================
GPU                ``cloud.google.com/gke-accelerator``, ``nvidia.com/gpu`` limits, GPU taint toleration
TPU                ``cloud.google.com/gke-tpu-accelerator`` + ``gke-tpu-topology``, ``google.com/tpu``
                   per host; a worker group replica is a slice (``numOfHosts`` = hosts per slice)
spot               ``cloud.google.com/gke-spot: "true"`` + toleration, 25 s termination grace
reservation        ``cloud.google.com/reservation-name`` (+ ``reservation-project``),
                   ``cloud.google.com/reservation-affinity: specific``
DWS flex-start     ``cloud.google.com/gke-flex-start: "true"``; queued: ``cloud.google.com/gke-queued``
                   toleration and a ProvisioningRequest (``queued-provisioning.gke.io``) the pods
                   consume; non-queued: ``cloud.google.com/gke-max-run-duration-seconds``
on-demand          node affinity away from spot, flex-start and reserved nodes
compute class      ``cloud.google.com/compute-class`` only (GKE picks the priority)
=================  ==========================================================================

Ray node labels (``rayfleet.io/pool``, ``rayfleet.io/accelerator``) go in the worker group's
``labels`` field and Ray resources (``accelerator_type:*``, ``TPU``) in ``rayStartParams``; KubeRay
passes both to ``ray start`` (``--labels``, ``--resources``), exactly as the local backend starts its
simulated hosts, so placement (bundle label selectors) is one code path. KubeRay rejects
``rayStartParams['labels']``, hence the ``labels`` field. Per-host labels (TPU slice / worker id,
host name) cannot be set on a pod template: on GKE Ray's own TPU labels (``ray.io/tpu-slice-name``,
``ray.io/tpu-worker-id``) and its automatic ``TPU-<type>-head`` resource on worker 0 play that role.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ...api import CPU, GPU, MEMORY, TPU, KubeRaySpec, PlacementStrategy, PoolSpec, Service, TrainJob
from ...api.base import format_quantity
from ...api.labels import LABEL_HOST, LABEL_TPU_SLICE, LABEL_TPU_WORKER, node_labels, node_resources
from ...api.pool import (
    DwsCalendarProvisioning,
    DwsFlexProvisioning,
    ReservationProvisioning,
    SpotProvisioning,
)
from ...config import PlatformConfig
from ..base import LaunchRequest, checkpoint_dir
from ..placement import POD_HOST_FRACTION, gang_fit, host_offer, plan_request
from ..rundir import request_doc
from ..runtime_env import with_package_uris
from .checkpoint_request import mount_notice, notice_configmap_name

# ---------------------------------------------------------------- GKE and Kubernetes names

GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
GKE_TPU_ACCELERATOR = "cloud.google.com/gke-tpu-accelerator"
GKE_TPU_TOPOLOGY = "cloud.google.com/gke-tpu-topology"
GKE_SPOT = "cloud.google.com/gke-spot"
GKE_RESERVATION_NAME = "cloud.google.com/reservation-name"
GKE_RESERVATION_PROJECT = "cloud.google.com/reservation-project"
GKE_RESERVATION_AFFINITY = "cloud.google.com/reservation-affinity"
GKE_COMPUTE_CLASS = "cloud.google.com/compute-class"
GKE_FLEX_START = "cloud.google.com/gke-flex-start"
GKE_MAX_RUN_DURATION = "cloud.google.com/gke-max-run-duration-seconds"
GKE_QUEUED = "cloud.google.com/gke-queued"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"

PROVREQ_API_VERSION = "autoscaling.x-k8s.io/v1"
PROVREQ_CLASS_QUEUED = "queued-provisioning.gke.io"
PROVREQ_CONSUME = "autoscaling.x-k8s.io/consume-provisioning-request"
PROVREQ_CLASS_ANNOTATION = "autoscaling.x-k8s.io/provisioning-class-name"

RAY_API_VERSION = "ray.io/v1"
KUEUE_QUEUE_NAME = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_CLASS = "kueue.x-k8s.io/priority-class"

# rayfleet's own object labels and annotations.
MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_CLUSTER = "rayfleet.io/cluster"
LABEL_RUN = "rayfleet.io/run"            # label-safe hash of the run id
LABEL_ATTEMPT = "rayfleet.io/attempt"
LABEL_ROLE = "rayfleet.io/role"          # fleet | run | service | dws | package
LABEL_SERVICE = "rayfleet.io/service"
LABEL_COMPUTE_CLASS = "rayfleet.io/compute-class"
ANN_RUN_ID = "rayfleet.io/run-id"
ANN_JOB_ID = "rayfleet.io/job-id"
ANN_HOSTS = "rayfleet.io/hosts"
ANN_METADATA = "rayfleet.io/metadata"
ANN_SPEC_HASH = "rayfleet.io/spec-hash"

#: Share of a host's allocatable CPU and memory a worker pod requests (defined with the gang-fit rule).
HOST_FRACTION = POD_HOST_FRACTION
#: Spot VMs get a 30 s termination notice; GKE recommends a shorter pod grace period.
SPOT_TERMINATION_GRACE_SECONDS = 25
#: Drivers of a run, as on the local backend: the Train launcher (train apps) and the entry-point
#: wrapper (commands); both read the run's request.json (with its GangPlan) from a run directory.
TRAIN_LAUNCHER_MODULE = "rayfleet.train.launcher"
ENTRYPOINT_MODULE = "rayfleet.train.entrypoint"
#: The run directory on the head pod, and the env var its request travels in.
RUN_DIR_ROOT = "/tmp/rayfleet/runs"
RUN_REQUEST_ENV = "RAYFLEET_RUN_REQUEST"
#: Where package ConfigMaps are mounted in the RayJob submitter pod.
PACKAGE_MOUNT_ROOT = "/rayfleet/packages"
FLEET_IDLE_TIMEOUT_SECONDS = 600


# ---------------------------------------------------------------- names


def k8s_name(prefix: str, key: str, *, limit: int = 47) -> str:
    """A DNS-1035 label for ``key`` (any string, e.g. a run id): ``<prefix>-<slug>-<hash8>``.

    The hash keeps different keys apart after lowercasing and truncation; the slug keeps the name
    readable in ``kubectl get``.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)
    room = limit - len(prefix) - len(digest) - 2
    slug = slug[:room].strip("-") if room > 0 else ""
    return "-".join(p for p in (prefix, slug, digest) if p)


def run_label(run_id: str) -> str:
    """A label value that identifies a run (run ids may exceed 63 characters)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:16]


def label_value(text: str) -> str:
    """``text`` made into a valid label value (at most 63 characters, alphanumeric ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


class _LiteralDumper(yaml.SafeDumper):
    """YAML with multi-line strings as literal blocks (readable embedded documents)."""


def _literal_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _literal_str)


def to_yaml(data: Any, *, sort_keys: bool = False) -> str:
    """``data`` as readable YAML (multi-line strings as ``|`` blocks)."""
    return yaml.dump(data, Dumper=_LiteralDumper, sort_keys=sort_keys, default_flow_style=False, width=120)


def spec_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- quantities


def cpu_quantity(millicores: int) -> str:
    return str(format_quantity(CPU, millicores))


def memory_quantity(nbytes: int) -> str:
    """Bytes rounded down to a whole MiB (readable, never more than asked)."""
    mib = nbytes // 2**20
    return str(format_quantity(MEMORY, mib * 2**20)) if mib else str(nbytes)


def quantity(resource: str, amount: int) -> str | int:
    if resource == CPU:
        return cpu_quantity(amount)
    if resource == MEMORY:
        return memory_quantity(amount)
    return amount


def pod_share(spec: PoolSpec) -> dict[str, int]:
    """What one worker pod requests on a host of ``spec`` (canonical units)."""
    return host_offer(spec, "kuberay")


def _pod_resources(spec: PoolSpec) -> dict[str, Any]:
    """Requests = limits (Guaranteed QoS; KubeRay sizes Ray's CPUs and memory from the limits),
    quantities as strings as core/v1 expects."""
    share = pod_share(spec)
    amounts = {CPU: cpu_quantity(share[CPU]), MEMORY: memory_quantity(share[MEMORY])}
    if spec.accelerator is not None:
        amounts[spec.accelerator.resource] = str(share[spec.accelerator.resource])
    return {"requests": dict(amounts), "limits": dict(amounts)}


# ---------------------------------------------------------------- placement on GKE


@dataclass(frozen=True)
class Placement:
    """How a pool's pods find their nodes."""

    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    affinity: dict[str, Any] | None = None
    termination_grace_seconds: int | None = None


def _accelerator_selection(spec: PoolSpec) -> tuple[dict[str, str], list[dict[str, Any]]]:
    acc = spec.accelerator
    if acc is None:
        return {}, []
    if acc.is_tpu:
        assert spec.tpu_topology is not None
        return (
            {GKE_TPU_ACCELERATOR: acc.value, GKE_TPU_TOPOLOGY: spec.tpu_topology},
            [{"key": TPU, "operator": "Exists", "effect": "NoSchedule"}],
        )
    return {GKE_ACCELERATOR: acc.value}, [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]


def pool_placement(spec: PoolSpec, *, pin_provisioning: bool = True, compute_class: str | None = None) -> Placement:
    """Node selector, tolerations and affinity that put a pod on a host of ``spec``.

    ``compute_class``: select the GKE ComputeClass instead of the pool (GKE then chooses among the
    class's priorities; GKE asks workloads not to combine the class with accelerator, spot or
    reservation selectors). ``pin_provisioning=False`` selects by accelerator and machine only and
    leaves the provisioning mode to someone else (Kueue injects its ResourceFlavor's node labels).
    """
    selector, tolerations = _accelerator_selection(spec)
    if compute_class is not None:
        return Placement(
            node_selector={GKE_COMPUTE_CLASS: compute_class},
            tolerations=[*tolerations, {"key": GKE_COMPUTE_CLASS, "operator": "Equal", "value": compute_class, "effect": "NoSchedule"}],
        )
    selector[INSTANCE_TYPE] = spec.machine_type
    if spec.zone:
        selector[ZONE] = spec.zone
    if not pin_provisioning:
        return Placement(selector, tolerations)
    prov = spec.provisioning
    grace = None
    affinity = None
    if isinstance(prov, ReservationProvisioning) and prov.affinity == "specific" and prov.reservation_name:
        selector[GKE_RESERVATION_NAME] = prov.reservation_name
        selector[GKE_RESERVATION_AFFINITY] = "specific"
        if prov.reservation_project:
            selector[GKE_RESERVATION_PROJECT] = prov.reservation_project
    elif isinstance(prov, SpotProvisioning):
        selector[GKE_SPOT] = "true"
        tolerations.append({"key": GKE_SPOT, "operator": "Equal", "value": "true", "effect": "NoSchedule"})
        grace = SPOT_TERMINATION_GRACE_SECONDS
    elif isinstance(prov, DwsFlexProvisioning):
        selector[GKE_FLEX_START] = "true"
        if prov.queued:
            tolerations.append({"key": GKE_QUEUED, "operator": "Equal", "value": "true", "effect": "NoSchedule"})
        else:
            selector[GKE_MAX_RUN_DURATION] = str(int(prov.max_run_duration))
    elif isinstance(prov, DwsCalendarProvisioning) and prov.reservation_name:
        # a calendar request's capacity is a reservation Compute Engine creates for the window,
        # consumed as a specific reservation (it exists only inside the window)
        selector[GKE_RESERVATION_NAME] = prov.reservation_name
        selector[GKE_RESERVATION_AFFINITY] = "specific"
        if prov.reservation_project:
            selector[GKE_RESERVATION_PROJECT] = prov.reservation_project
    elif isinstance(prov, DwsCalendarProvisioning):
        pass  # unnamed calendar reservation: the pool's own nodes, pinned by accelerator + machine type
    else:  # on-demand: keep off the spot, flex-start and reserved nodes of the same machine type
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": GKE_SPOT, "operator": "NotIn", "values": ["true"]},
                                {"key": GKE_FLEX_START, "operator": "NotIn", "values": ["true"]},
                                {"key": GKE_RESERVATION_NAME, "operator": "DoesNotExist"},
                            ]
                        }
                    ]
                }
            }
        }
    return Placement(selector, tolerations, affinity, grace)


def is_queued_dws(spec: PoolSpec) -> bool:
    return isinstance(spec.provisioning, DwsFlexProvisioning) and spec.provisioning.queued


# ---------------------------------------------------------------- Ray node labels and resources


def ray_group_labels(pool: str, spec: PoolSpec) -> dict[str, str]:
    """The Ray node labels every host of the pool carries (per-host labels excluded, see module doc)."""
    per_host = (LABEL_TPU_SLICE, LABEL_TPU_WORKER, LABEL_HOST)
    return {k: v for k, v in node_labels(pool, spec).items() if k not in per_host}


def ray_start_params(spec: PoolSpec) -> dict[str, str]:
    """``rayStartParams`` of a worker group: GPU count and the custom resources of
    :func:`rayfleet.api.labels.node_resources` (without the slice-head resource, which Ray adds
    itself on TPU worker 0)."""
    params: dict[str, str] = {}
    if spec.accelerator is not None and not spec.is_tpu:
        params["num-gpus"] = str(spec.accelerators_per_host)
    resources = node_resources(spec, host_index=1)
    if resources:
        # KubeRay passes the value to `ray start --resources=...` in a shell; single quotes as KubeRay writes them.
        params["resources"] = "'" + json.dumps(resources, sort_keys=True, separators=(",", ":")) + "'"
    return params


# ---------------------------------------------------------------- pod templates and groups


def _container(name: str, image: str, resources: dict[str, Any], *, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "resources": resources}
    if ports:
        c["ports"] = ports
    return c


def worker_pod_template(
    spec: PoolSpec,
    kuberay: KubeRaySpec,
    placement: Placement,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The PodTemplateSpec of one host's Ray worker."""
    pod_spec: dict[str, Any] = {
        "containers": [_container("ray-worker", kuberay.image, _pod_resources(spec))],
        "nodeSelector": dict(placement.node_selector),
    }
    if placement.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in placement.tolerations]
    if placement.affinity:
        pod_spec["affinity"] = placement.affinity
    if placement.termination_grace_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = placement.termination_grace_seconds
    meta: dict[str, Any] = {}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    out: dict[str, Any] = {"spec": pod_spec}
    if meta:
        out = {"metadata": meta, **out}
    return out


def head_group(kuberay: KubeRaySpec, *, serve: bool = False, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The head: no Ray work scheduled on it (num-cpus 0), dashboard reachable in the cluster."""
    resources = {"cpu": kuberay.head_cpu, "memory": kuberay.head_memory}
    ports = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
    ]
    if serve:
        ports.append({"containerPort": 8000, "name": "serve"})
    template: dict[str, Any] = {
        "spec": {"containers": [_container("ray-head", kuberay.image, {"requests": dict(resources), "limits": dict(resources)}, ports=ports)]}
    }
    if labels:
        template = {"metadata": {"labels": dict(labels)}, **template}
    return {"rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"}, "template": template}


def worker_group(
    pool: str,
    spec: PoolSpec,
    kuberay: KubeRaySpec,
    *,
    replicas: int,
    min_replicas: int,
    max_replicas: int,
    placement: Placement | None = None,
    group_name: str | None = None,
    pod_labels: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
    ray_labels: dict[str, str] | None = None,
    autoscaled: bool = False,
) -> dict[str, Any]:
    """A worker group on ``pool``: one replica is one host, or one TPU slice of ``numOfHosts`` hosts.
    ``autoscaled``: Ray's autoscaler gives a worker back after the pool's ``idleTimeout``."""
    placement = placement or pool_placement(spec)
    group: dict[str, Any] = {
        "groupName": group_name or pool,
        "replicas": replicas,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "numOfHosts": spec.slice_hosts,
        "labels": ray_labels if ray_labels is not None else ray_group_labels(pool, spec),
        "rayStartParams": ray_start_params(spec),
        "template": worker_pod_template(spec, kuberay, placement, labels=pod_labels, annotations=pod_annotations),
    }
    if autoscaled:
        group["idleTimeoutSeconds"] = int(spec.idle_timeout)
    return group


def _auth(auth_secret: str | None) -> dict[str, Any]:
    return {"mode": "token", **({"secretName": auth_secret} if auth_secret else {})}


def _meta(name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def cluster_kuberay(cfg: PlatformConfig) -> tuple[str, KubeRaySpec]:
    """(cluster name, KubeRay settings) of a config; a config without a Cluster document gets defaults."""
    if cfg.cluster is None:
        return "rayfleet", KubeRaySpec()
    return cfg.cluster.name, cfg.cluster.spec.kuberay or KubeRaySpec()


def cluster_pools(cfg: PlatformConfig) -> list[str]:
    if cfg.cluster is not None and cfg.cluster.spec.pools:
        return list(cfg.cluster.spec.pools)
    return list(cfg.pools)


def fleet_raycluster(cfg: PlatformConfig, *, auth_secret: str | None = None) -> dict[str, Any]:
    """The long-lived RayCluster of a config: a head plus one autoscaled worker group per pool.

    Worker groups start at zero replicas (``minReplicas: 0``): a gang runs in its RayJob's own
    RayCluster, and a fleet pod pinned on a reserved host would keep that host from every gang.
    ``Pool.minReplicas`` is a GKE node-pool setting on this backend (nodes kept warm), not Ray pods.
    """
    name, kuberay = cluster_kuberay(cfg)
    labels = {MANAGED_BY: "rayfleet", LABEL_CLUSTER: name, LABEL_ROLE: "fleet"}
    pod_labels = {LABEL_CLUSTER: name, LABEL_ROLE: "fleet"}
    groups = [
        worker_group(p, cfg.pools[p].spec, kuberay, replicas=0, min_replicas=0, max_replicas=cfg.pools[p].spec.max_replicas, pod_labels=pod_labels,
                     autoscaled=True)
        for p in cluster_pools(cfg)
    ]
    spec: dict[str, Any] = {
        "rayVersion": kuberay.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"version": "v2", "upscalingMode": "Default", "idleTimeoutSeconds": FLEET_IDLE_TIMEOUT_SECONDS},
        "authOptions": _auth(auth_secret),
        "headGroupSpec": head_group(kuberay),
        "workerGroupSpecs": groups,
    }
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayCluster",
        "metadata": _meta(name, kuberay.namespace, labels, {ANN_SPEC_HASH: spec_hash(spec)}),
        "spec": spec,
    }


# ---------------------------------------------------------------- gangs


def gang_shape(spec: PoolSpec, workers: int, resources_per_worker: dict[str, int],
               strategy: PlacementStrategy | str | None = None) -> tuple[int, int]:
    """(hosts, worker-group replicas) a gang of ``workers`` needs on a pool: the gang-fit rule
    (:func:`rayfleet.backends.placement.gang_fit`) with a worker pod's share of a host. Multi-host
    TPU gangs take one whole slice. Raises ValueError naming why the gang can never fit."""
    fit = gang_fit(spec, workers, resources_per_worker, strategy, backend="kuberay")
    if not fit.ok:
        raise ValueError("; ".join(why for _, why in fit.problems))
    return fit.hosts, fit.slices


def run_request(req: LaunchRequest, *, placement_timeout_s: float) -> dict[str, Any]:
    """The run's request.json, as the local backend writes it: the launch and its GangPlan.

    The plan is the local backend's (:func:`rayfleet.backends.placement.plan_request`): one bundle per
    worker, pinned to the pool by the ``rayfleet.io/pool`` label the worker group carries. Ray CPUs
    per host are what KubeRay gives a worker pod (its CPU limit, rounded down). No TPU slice pin:
    the run's own RayCluster holds only the slices of its gang.
    """
    spec = req.pool_spec
    plan = plan_request(req, spec=spec, host_cpus=float(pod_share(spec)[CPU] // 1000))
    return request_doc(req, plan=plan, checkpoint_dir=req.checkpoint_dir, placement_timeout_s=placement_timeout_s,
                       fake_accelerators=False)


def driver_command(req: LaunchRequest) -> str:
    """The RayJob entrypoint: write request.json into a run directory on the head, then run the
    driver the local backend runs (the Train launcher or the entry-point wrapper)."""
    run_dir = shlex.quote(f"{RUN_DIR_ROOT}/{req.run_id}")
    module = TRAIN_LAUNCHER_MODULE if req.train_app else ENTRYPOINT_MODULE
    return (
        f"mkdir -p {run_dir} && printf '%s' \"${RUN_REQUEST_ENV}\" > {run_dir}/request.json"
        f" && exec python -m {module} --run-dir {run_dir}"
    )


def _runtime_env(req: LaunchRequest, packages: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
    env = with_package_uris(req.runtime_env, packages)
    env["env_vars"] = {**(env.get("env_vars") or {}), RUN_REQUEST_ENV: json.dumps(request, sort_keys=True, indent=1) + "\n"}
    return env


def package_mount(uri: str) -> tuple[str, str, str]:
    """(ConfigMap name, key, path in the submitter pod) of an uploaded runtime_env package URI."""
    key = uri.rsplit("/", 1)[-1]
    cm = k8s_name("rayfleet-pkg", key, limit=63)
    return cm, key, f"{PACKAGE_MOUNT_ROOT}/{cm}/{key}"


def _submitter_template(kuberay: KubeRaySpec, packages: list[str]) -> dict[str, Any]:
    """A submitter pod that mounts uploaded packages; KubeRay fills in the `ray job submit` command."""
    volumes, mounts = [], []
    for uri in packages:
        cm, key, path = package_mount(uri)
        volumes.append({"name": cm, "configMap": {"name": cm, "items": [{"key": key, "path": key}]}})
        mounts.append({"name": cm, "mountPath": path.rsplit("/", 1)[0], "readOnly": True})
    resources = {"cpu": "500m", "memory": "512Mi"}
    container = _container("ray-job-submitter", kuberay.image, {"requests": dict(resources), "limits": dict(resources)})
    container["volumeMounts"] = mounts
    return {"spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes}}


@dataclass(frozen=True)
class RunObjects:
    """Everything one launch creates, in creation order."""

    name: str
    rayjob: dict[str, Any]
    pod_template: dict[str, Any] | None = None
    provisioning_request: dict[str, Any] | None = None
    hosts: int = 0

    def objects(self) -> list[dict[str, Any]]:
        return [o for o in (self.pod_template, self.provisioning_request, self.rayjob) if o is not None]


def run_objects(
    req: LaunchRequest,
    *,
    cluster: str,
    kuberay: KubeRaySpec,
    namespace: str | None = None,
    suspend: bool = False,
    local_queue: str | None = None,
    priority_class: str | None = None,
    pin_provisioning: bool = True,
    packages: list[str] | None = None,
    auth_secret: str | None = None,
    ttl_seconds_after_finished: int | None = None,
    placement_timeout_s: float = 600.0,
) -> RunObjects:
    """The RayJob of one attempt, with its own RayCluster: a head and one worker group on the
    admitted pool, sized to the gang (``replicas = minReplicas = maxReplicas``, no autoscaling), and for
    a queued DWS flex-start pool the PodTemplate + ProvisioningRequest its workers consume.

    ``suspend`` + ``local_queue`` make a Kueue-admitted RayJob (Kueue unsuspends it on admission).
    ``packages``: runtime_env package URIs uploaded as ConfigMaps (:func:`package_mount`).
    ``placement_timeout_s``: how long the driver waits for the gang's placement group (the
    RayCluster's pods coming up, DWS provisioning included).
    """
    namespace = namespace or kuberay.namespace
    spec = req.pool_spec
    hosts, replicas = gang_shape(spec, req.workers, req.resources_per_worker, req.placement_strategy)
    name = k8s_name("rf", req.run_id)
    labels = {
        MANAGED_BY: "rayfleet",
        LABEL_CLUSTER: cluster,
        LABEL_ROLE: "run",
        LABEL_RUN: run_label(req.run_id),
        LABEL_ATTEMPT: str(req.attempt),
        "rayfleet.io/pool": req.pool,
    }
    if local_queue:
        labels[KUEUE_QUEUE_NAME] = local_queue
    if priority_class:
        labels[KUEUE_PRIORITY_CLASS] = priority_class
    annotations = {ANN_RUN_ID: req.run_id, ANN_JOB_ID: req.job_id, ANN_HOSTS: str(hosts)}
    if req.metadata:
        annotations[ANN_METADATA] = json.dumps(req.metadata, sort_keys=True)
    pod_labels = {LABEL_RUN: run_label(req.run_id), LABEL_CLUSTER: cluster, LABEL_ROLE: "run"}
    placement = pool_placement(spec, pin_provisioning=pin_provisioning)

    pod_template = provreq = None
    pod_annotations: dict[str, str] = {}
    if pin_provisioning and is_queued_dws(spec):
        assert isinstance(spec.provisioning, DwsFlexProvisioning)
        run_seconds = int(spec.provisioning.max_run_duration)
        if req.max_run_duration:
            run_seconds = min(run_seconds, math.ceil(req.max_run_duration))
        pod_template, provreq = provisioning_request_pair(
            name, namespace, spec, kuberay, placement, count=hosts, max_run_seconds=run_seconds, labels={**labels, LABEL_ROLE: "dws"}
        )
        pod_annotations = {PROVREQ_CONSUME: name, PROVREQ_CLASS_ANNOTATION: PROVREQ_CLASS_QUEUED}

    group = worker_group(
        req.pool, spec, kuberay, replicas=replicas, min_replicas=replicas, max_replicas=replicas,
        placement=placement, pod_labels=pod_labels, pod_annotations=pod_annotations,
    )
    head = head_group(kuberay, labels=pod_labels)
    for template in (head["template"], group["template"]):
        mount_notice(template, notice_configmap_name(name))
    cluster_spec: dict[str, Any] = {
        "rayVersion": kuberay.ray_version,
        "enableInTreeAutoscaling": False,
        "authOptions": _auth(auth_secret),
        "headGroupSpec": head,
        "workerGroupSpecs": [group],
    }
    if (req.entrypoint is None) == (req.train_app is None):
        raise ValueError("a launch request needs exactly one of entrypoint or train_app")
    request = run_request(req, placement_timeout_s=placement_timeout_s)
    runtime_env = _runtime_env(req, {u: package_mount(u)[2] for u in packages or []}, request)
    job_spec: dict[str, Any] = {
        "entrypoint": driver_command(req),
        "jobId": req.run_id,
        "runtimeEnvYAML": to_yaml(runtime_env, sort_keys=True),
        "metadata": {k: str(v) for k, v in req.metadata.items()},
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": kuberay.ttl_seconds_after_finished if ttl_seconds_after_finished is None else ttl_seconds_after_finished,
        "backoffLimit": 0,
    }
    if not job_spec["metadata"]:
        del job_spec["metadata"]
    if req.max_run_duration:
        job_spec["activeDeadlineSeconds"] = math.ceil(req.max_run_duration)
    job_spec["submissionMode"] = "K8sJobMode"
    job_spec["suspend"] = suspend
    if packages:
        job_spec["submitterPodTemplate"] = _submitter_template(kuberay, packages)
    job_spec["rayClusterSpec"] = cluster_spec
    rayjob = {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": _meta(name, namespace, labels, annotations),
        "spec": job_spec,
    }
    return RunObjects(name=name, rayjob=rayjob, pod_template=pod_template, provisioning_request=provreq, hosts=hosts)


def provisioning_request_pair(
    name: str,
    namespace: str,
    spec: PoolSpec,
    kuberay: KubeRaySpec,
    placement: Placement,
    *,
    count: int,
    max_run_seconds: int,
    labels: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """PodTemplate + ProvisioningRequest (``queued-provisioning.gke.io``): GKE provisions all
    ``count`` hosts at once, for at most ``max_run_seconds``; pods consume the request through
    the ``autoscaling.x-k8s.io/consume-provisioning-request`` annotation."""
    template_name = f"{name}-workers"
    pod_template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": _meta(template_name, namespace, labels),
        "template": worker_pod_template(spec, kuberay, placement, labels={LABEL_RUN: labels.get(LABEL_RUN, name)}),
    }
    provreq = {
        "apiVersion": PROVREQ_API_VERSION,
        "kind": "ProvisioningRequest",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "provisioningClassName": PROVREQ_CLASS_QUEUED,
            "parameters": {"maxRunDurationSeconds": str(max_run_seconds)},
            "podSets": [{"count": count, "podTemplateRef": {"name": template_name}}],
        },
    }
    return pod_template, provreq


def launch_request_for(job: TrainJob, cfg: PlatformConfig, pool: str, *, attempt: int = 1) -> LaunchRequest:
    """A LaunchRequest for ``job`` on ``pool`` (what the controller builds after admission)."""
    return LaunchRequest.for_job(job, pool, cfg.pools[pool].spec, attempt=attempt, checkpoint_dir=checkpoint_dir(job, None))


# ---------------------------------------------------------------- RayService


#: ``(service, pool, pool spec, granted replicas) -> Serve application`` (``ServeApplicationSchema``).
#: Backends may not import ``rayfleet.serve``, so the caller supplies it: the control service passes
#: ``rayfleet.server.main.kuberay_serve_app`` (``serve.deployer.service_app_config``), the same
#: leader-worker application the local backend deploys.
ServeAppBuilder = Callable[[Service, str, PoolSpec, int], dict[str, Any]]


def service_pool(svc: Service, cfg: PlatformConfig) -> tuple[str, str | None]:
    """(pool, compute class) a Service runs on when no flavor is pinned: the queue's compute class
    when it covers the replica's accelerator (GKE then falls back across its priorities), else the
    queue's first flavor that fits a replica host."""
    rg = svc.spec.replica_group
    flavors = cfg.flavors_for(svc.spec.queue, rg.accelerator, dict(rg.resources_per_host))
    if not flavors:
        raise ValueError(f"queue {svc.spec.queue!r} has no flavor whose hosts fit a replica host of service {svc.name!r}")
    queue = cfg.queues[svc.spec.queue]
    cc_name = queue.spec.compute_class
    if cc_name is not None:
        steps = [s.flavor for s in cfg.compute_classes[cc_name].spec.flavors]
        if steps and all(f in flavors for f in steps):
            return cfg.flavors[steps[0]].spec.pool, cc_name
    return cfg.flavors[flavors[0]].spec.pool, None


def rayservice(
    svc: Service,
    cfg: PlatformConfig,
    serve_app: ServeAppBuilder,
    *,
    pool: str | None = None,
    granted: int | None = None,
    namespace: str | None = None,
    auth_secret: str | None = None,
) -> dict[str, Any]:
    """A RayService for ``svc``: its own RayCluster with one autoscaled worker group sized in
    replicas x hosts-per-replica, ``serveConfigV2`` the one application ``serve_app`` builds for
    the pool and the replica cap (see :data:`ServeAppBuilder`).

    ``pool`` pins the pool of an admitted flavor; without it the Service goes through its queue's
    compute class (if any, see :func:`service_pool`). ``granted`` caps the replicas (quota);
    default ``maxReplicas``.
    """
    cluster, kuberay = cluster_kuberay(cfg)
    rg = svc.spec.replica_group
    compute_class = None
    if pool is None:
        pool, compute_class = service_pool(svc, cfg)
    spec = cfg.pools[pool].spec
    if spec.is_tpu and spec.slice_hosts > 1 and rg.hosts_per_replica != spec.slice_hosts:
        raise ValueError(
            f"service {svc.name!r}: a replica of {rg.hosts_per_replica} host(s) cannot use pool {pool!r} whose TPU slices have {spec.slice_hosts} hosts"
        )
    host_share = pod_share(spec)
    for r, amount in rg.resources_per_host.items():
        if amount > host_share.get(r, 0):
            raise ValueError(f"service {svc.name!r}: a replica host asks for {quantity(r, amount)} {r}; a pod on pool {pool!r} gets {quantity(r, host_share.get(r, 0))}")
    per_replica = 1 if (spec.is_tpu and spec.slice_hosts > 1) else rg.hosts_per_replica
    auto = svc.spec.autoscaling
    cap = auto.max_replicas if granted is None else max(1, min(granted, auto.max_replicas))
    floor = min(auto.min_replicas, cap)
    labels = {MANAGED_BY: "rayfleet", LABEL_CLUSTER: cluster, LABEL_ROLE: "service", LABEL_SERVICE: label_value(svc.name)}
    placement = pool_placement(spec, compute_class=compute_class)
    ray_labels = ray_group_labels(pool, spec)
    group_name = pool
    if compute_class is not None:
        ray_labels = {k: v for k, v in ray_labels.items() if k != "rayfleet.io/pool"}
        ray_labels[LABEL_COMPUTE_CLASS] = compute_class
        group_name = compute_class
    group = worker_group(
        pool, spec, kuberay,
        replicas=floor * per_replica,
        min_replicas=floor * per_replica,
        max_replicas=cap * per_replica,
        placement=placement, group_name=group_name, ray_labels=ray_labels,
        pod_labels={LABEL_SERVICE: label_value(svc.name), LABEL_CLUSTER: cluster, LABEL_ROLE: "service"},
        autoscaled=True,
    )
    config = {"applications": [serve_app(svc, pool, spec, cap)]}
    annotations = {"rayfleet.io/queue": svc.spec.queue}
    if compute_class:
        annotations["rayfleet.io/compute-class"] = compute_class
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayService",
        "metadata": _meta(svc.name, namespace or kuberay.namespace, labels, annotations),
        "spec": {
            "serveConfigV2": to_yaml(config),
            "rayClusterConfig": {
                "rayVersion": kuberay.ray_version,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"version": "v2", "upscalingMode": "Default", "idleTimeoutSeconds": FLEET_IDLE_TIMEOUT_SECONDS},
                "authOptions": _auth(auth_secret),
                "headGroupSpec": head_group(kuberay, serve=True),
                "workerGroupSpecs": [group],
            },
        },
    }

