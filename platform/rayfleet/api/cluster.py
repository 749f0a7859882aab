"""Clusters: a provisioned Ray cluster and the backend that runs it."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from . import limits
from .base import Document, Duration, MemoryQuantity, Model, Name, Text


class LocalBackendSpec(Model):
    object_store_memory: MemoryQuantity = Field(default=128 * 2**20, description="Object store per simulated host.")
    cpus_per_host: int = Field(default=1, ge=1, le=1024, description="At most 1024. Ray CPUs each simulated host advertises (whole CPUs, as `ray start` takes; real CPU is shared).")
    head_cpus: int = Field(default=2, ge=0, le=1024, description="At most 1024. Ray CPUs on the head node (job drivers, Serve proxy and controller), whole CPUs.")
    temp_dir: Text | None = Field(default=None, description="Ray temp dir; default: under the data directory.")
    dashboard_port: int | None = Field(default=None, ge=1, le=65535, description="Ray dashboard port; default: a free port.")
    serve_port: int = Field(default=8000, ge=1, le=65535, description="Port of Serve's HTTP proxy: services answer at http://127.0.0.1:<servePort>/<routePrefix>.")
    scenario: str | None = Field(default=None, description="Path of a scenario file (docs/sim.md format: pools and hosts) scripting provisioning delays, stockouts and reclaims of the local hosts, so they show on real Ray.")


class ClientConnection(Model):
    """The Kubernetes client's request budget, as Kueue's `clientConnection` (and client-go's rest
    config): a token bucket refilled at `qps` tokens a second holding at most `burst`; every API
    request, a watch included, takes one token."""

    qps: float = Field(default=300.0, gt=0, le=100_000, description="Sustained API requests per second the KubeRay backend may send (Kueue's default: 300); more than 0, at most 100000.")
    burst: int = Field(default=500, ge=1, le=100_000, description="Requests that may go at once after a quiet spell (Kueue's default: 500); at least 1, at most 100000.")


class KubeRaySpec(Model):
    namespace: Name = Field(default="rayfleet", description="Namespace the RayClusters live in.")
    kubeconfig: Text | None = Field(default=None, description="Path of a kubeconfig; empty uses in-cluster config or the default kubeconfig.")
    context: Text | None = Field(default=None, description="kubeconfig context.")
    in_cluster: bool = Field(default=False, description="Use the pod's service account.")
    image: Text = Field(default="rayproject/ray:2.60.0-py311", description="Ray image for head and workers.")
    ray_version: str = Field(default="2.60.0", max_length=64, description="Ray version (RayCluster spec.rayVersion).")
    ttl_seconds_after_finished: int = Field(default=300, ge=0, le=int(limits.DURATION_MAX_S), description="RayJob ttlSecondsAfterFinished; at most 90 days.")
    head_cpu: str = Field(default="4", max_length=64, description="Head pod CPU.")
    head_memory: str = Field(default="16Gi", max_length=64, description="Head pod memory.")
    client_connection: ClientConnection = Field(default_factory=ClientConnection, description="The API request budget of rayfleet's Kubernetes client (qps, burst), as Kueue's clientConnection.")


class SimSpec(Model):
    seed: int = Field(default=0, description="Seed of the simulated backend's random choices (provisioning jitter, runtime jitter): one seed, one history.")
    scenario: str | None = Field(default=None, description="Path of a scenario file (docs/sim.md) scripting hosts, runs and services; relative paths are relative to the working directory.")
    provisioning_delay: Duration = Field(default=0.0, ge=0, description="Seconds a host takes from being requested to being ready, unless a pool's scenario says otherwise.")
    provisioning_jitter: Duration = Field(default=0.0, ge=0, description="Up to this many seconds (drawn from the seed) added to each host's provisioning delay.")
    default_runtime: Duration = Field(default=30.0, gt=0, description="Seconds a run works before it succeeds, for jobs no scenario scripts.")
    time_scale: float = Field(default=1.0, gt=0, description="Simulated seconds per real second when the control service runs on the sim (`rayfleet up --backend sim`).")


class HostHealthPolicy(Model):
    failures_to_cordon: int = Field(default=3, ge=1, le=1000, description="Runs that fail on a host within `window` before it is cordoned as faulty.")
    window: Duration = Field(default=3600.0, gt=0, description="The window failures are counted in.")
    repair_time: Duration = Field(default=600.0, ge=0, description="How long a cordoned host is out for repair before it is returned to service (local: its Ray node restarted; GKE: node auto-repair).")


class FairSharingStrategy(StrEnum):
    LESS_THAN_OR_EQUAL_TO_FINAL_SHARE = "LessThanOrEqualToFinalShare"
    LESS_THAN_INITIAL_SHARE = "LessThanInitialShare"


class ClusterFailover(Model):
    unreachable_after: Duration = Field(default=60.0, gt=0, le=limits.DURATION_MAX_S, description=(
        "A cluster that has not answered the controller for this long is cordoned automatically (no new work; what runs there keeps its last known state)."))
    recover_after: Duration = Field(default=300.0, ge=0, le=limits.DURATION_MAX_S, description=(
        "A cluster cordoned automatically is uncordoned once it has answered again for this long (an admin's cordon stays until uncordoned by hand)."))
    lost_after: Duration | None = Field(default=900.0, gt=0, le=limits.DURATION_MAX_S, description=(
        "A cluster that has not answered for this long (Kueue MultiKueue's workerLostTimeout, 15 min by default) is presumed lost: unless an admin "
        "cordoned it, its cordon becomes a drain, so its runs resume elsewhere from their last checkpoint once the drain grace since the cordon "
        "has passed, and their old runs are stopped if it answers again; null: never (its runs wait for it, or for an admin's drain)."))
    drain_grace: Duration = Field(default=300.0, gt=0, le=limits.DURATION_MAX_S, description=(
        "A drained cluster's runs move once their checkpoint asked for at the drain is saved, or this long after the drain at the latest "
        "(a run that cannot checkpoint, or a cluster that does not answer, then resumes elsewhere from its last checkpoint)."))


class ClusterSpec(Model):
    backend: Literal["local", "kuberay", "sim"] = Field(default="local", description="Where Ray runs: local processes, KubeRay on GKE, or the simulated backend (no Ray, scripted hosts).")
    pools: list[Name] = Field(default_factory=list, description="Pools in this cluster; empty means every pool of the config.")
    local: LocalBackendSpec = Field(default_factory=LocalBackendSpec, description="Local backend settings.")
    kuberay: KubeRaySpec | None = Field(default=None, description="KubeRay settings (backend: kuberay).")
    sim: SimSpec = Field(default_factory=SimSpec, description="Simulated backend settings (backend: sim).")
    fair_sharing: bool = Field(default=False, description="Kueue fair sharing: admission and preemption in a cohort prefer the queue with the lowest weighted share.")
    fair_sharing_strategies: list[FairSharingStrategy] = Field(
        default_factory=lambda: [FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE, FairSharingStrategy.LESS_THAN_INITIAL_SHARE],
        description="Kueue's fairSharing.preemptionStrategies, tried in order while fair sharing is on: LessThanOrEqualToFinalShare preempts a "
                    "workload when the preemptor's share after admission is at most the target queue's share after the preemption; "
                    "LessThanInitialShare when it is below the target's share before it. One of the two, or both in that order.")
    start_timeout: Duration = Field(default=120, gt=0, description="How long bringing the cluster up may take.")
    host_health: HostHealthPolicy = Field(default_factory=HostHealthPolicy, description="When a host that breaks runs is cordoned, and when it comes back.")
    failover: ClusterFailover = Field(default_factory=ClusterFailover, description="With several Cluster documents: when this cluster is cordoned for not answering, and when it comes back.")

    @model_validator(mode="after")
    def _strategies(self) -> ClusterSpec:
        allowed = [[FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE, FairSharingStrategy.LESS_THAN_INITIAL_SHARE],
                   [FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE], [FairSharingStrategy.LESS_THAN_INITIAL_SHARE]]
        if self.fair_sharing_strategies not in allowed:
            raise ValueError("fairSharingStrategies: Kueue accepts [LessThanOrEqualToFinalShare, LessThanInitialShare], "
                             f"[LessThanOrEqualToFinalShare] or [LessThanInitialShare], got {[s.value for s in self.fair_sharing_strategies]}")
        return self

    @model_validator(mode="after")
    def _backend(self) -> ClusterSpec:
        if self.backend == "kuberay" and self.kuberay is None:
            object.__setattr__(self, "kuberay", KubeRaySpec())
        return self


class ClusterStatus(Model):
    state: Literal["Down", "Starting", "Up", "Degraded", "Stopping"] = Field(default="Down", description="Lifecycle state.")
    address: str | None = Field(default=None, description="Ray GCS address.")
    dashboard_url: str | None = Field(default=None, description="Ray dashboard / Jobs API URL.")
    message: str = Field(default="", description="Why the cluster is in its state.")


class Cluster(Document):
    KIND = "Cluster"
    kind: Literal["Cluster"] = "Cluster"
    spec: ClusterSpec = Field(default_factory=ClusterSpec, description="Backend and pools.")
    status: ClusterStatus = Field(default_factory=ClusterStatus, description="Observed state.")
