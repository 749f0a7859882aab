"""Serve services: replicas that are multi-host leader-worker groups."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from . import limits
from .base import (
    ACCELERATOR_RESOURCES,
    Document,
    Duration,
    JsonObject,
    Labels,
    Model,
    Name,
    Resources,
    SubmittedMeta,
)
from .pool import Accelerator


class ReplicaGroupSpec(Model):
    hosts_per_replica: int = Field(default=1, ge=1, le=limits.HOSTS_PER_REPLICA_MAX, description="Hosts in one replica (1 to 64): a leader (host 0) and hostsPerReplica-1 workers.")
    resources_per_host: Resources = Field(default_factory=lambda: {"cpu": 1000}, description="Resources of each host of a replica.")
    accelerator: Accelerator | None = Field(default=None, description="Accelerator the replica needs (GKE name).")

    @model_validator(mode="after")
    def _accel(self) -> ReplicaGroupSpec:
        wants = [r for r in ACCELERATOR_RESOURCES if self.resources_per_host.get(r)]
        if len(wants) > 1:
            raise ValueError("resourcesPerHost: a host asks for either nvidia.com/gpu or google.com/tpu, not both")
        if self.accelerator is not None and wants and wants[0] != self.accelerator.resource:
            raise ValueError(f"accelerator: {self.accelerator.value} is requested by {self.accelerator.resource}, not {wants[0]}")
        return self


#: Ray Serve's defaults for the two autoscaling windows (``AutoscalingConfig``).
SERVE_LOOK_BACK_PERIOD_S = 30.0
SERVE_METRICS_INTERVAL_S = 10.0


class AutoscalingSpec(Model):
    min_replicas: int = Field(default=1, ge=0, le=limits.SERVICE_REPLICAS_MAX, description="Replicas always kept (admitted as one workload); at most 1000.")
    max_replicas: int = Field(default=1, ge=1, le=limits.SERVICE_REPLICAS_MAX, description="Most replicas (at most 1000); each above minReplicas is its own quota request.")
    target_ongoing_requests: float = Field(default=2.0, gt=0, le=limits.TARGET_ONGOING_REQUESTS_MAX, description="Ray Serve target of ongoing requests per replica: a finite number above 0, at most 100000.")
    upscale_delay: Duration = Field(default=30.0, description="How long load must stay high before scaling up.")
    downscale_delay: Duration = Field(default=600.0, description="How long load must stay low before scaling down.")
    look_back_period: Duration | None = Field(
        default=None, description="Ray Serve look_back_period_s: the window ongoing requests are averaged over (Serve's default: 30s)."
    )
    metrics_interval: Duration | None = Field(
        default=None, description="Ray Serve metrics_interval_s: how often replicas and handles report load (Serve's default: 10s)."
    )

    @model_validator(mode="after")
    def _order(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas: {self.min_replicas} exceeds maxReplicas {self.max_replicas}")
        for name, value in (("lookBackPeriod", self.look_back_period), ("metricsInterval", self.metrics_interval)):
            if value is not None and value <= 0:
                raise ValueError(f"{name}: must be more than 0 seconds, got {value}")
        look_back = self.look_back_period if self.look_back_period is not None else SERVE_LOOK_BACK_PERIOD_S
        interval = self.metrics_interval if self.metrics_interval is not None else SERVE_METRICS_INTERVAL_S
        if (self.look_back_period is not None or self.metrics_interval is not None) and look_back <= interval:
            raise ValueError(f"lookBackPeriod: {look_back}s must be longer than metricsInterval ({interval}s), the window must hold a report")
        return self


class ServiceSpec(Model):
    import_path: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", max_length=256, description="Serve application import path, module:attribute.")
    args: JsonObject = Field(default_factory=dict, description="Arguments for the application builder; at most 256 KiB as JSON.")
    replica_group: ReplicaGroupSpec = Field(default_factory=ReplicaGroupSpec, description="Shape of one replica (a leader-worker group).")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Replica bounds and Serve autoscaling.")
    route_prefix: str = Field(default="/", pattern=r"^/[\w\-/.]*$", max_length=256, description="HTTP route prefix under the Serve proxy.")
    queue: Name = Field(description="Queue whose quota the replicas draw on.")
    priority_class: Name | None = Field(default=None, description="Priority class of the replicas.")
    labels: Labels = Field(default_factory=dict, description="Labels for metrics and cost; at most 64, values up to 1024 characters.")
    runtime_env: JsonObject = Field(default_factory=dict, description="Ray runtime_env; at most 256 KiB as JSON.")


class ServiceState(StrEnum):
    PENDING = "PENDING"
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"


class ServiceStatus(Model):
    state: ServiceState = Field(default=ServiceState.PENDING, description="Lifecycle state.")
    replicas_wanted: int = Field(default=0, description="Replicas Serve autoscaling asks for.")
    replicas_granted: int = Field(default=0, description="Replicas quota granted.")
    replicas_running: int = Field(default=0, description="Replicas whole and routed to.")
    flavor: str | None = Field(default=None, description="Flavor the replicas run on.")
    url: str | None = Field(default=None, description="HTTP URL of the service.")
    message: str = Field(default="", description="Why the replica counts differ.")
    group_moves: dict[str, str] = Field(default_factory=dict, description="Replica groups moving to another flavor (group index -> flavor), each with its quota admitted there; the old flavor's quota is kept until every group has moved.")


class Service(Document):
    KIND = "Service"
    kind: Literal["Service"] = "Service"
    metadata: SubmittedMeta = Field(description="Name, labels and the server-set uid.")
    spec: ServiceSpec = Field(description="The application and its replicas.")
    status: ServiceStatus = Field(default_factory=ServiceStatus, description="Observed state.")
