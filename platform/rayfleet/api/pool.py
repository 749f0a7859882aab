"""Pools: sets of identical hosts (a GKE node pool, or a group of simulated Ray nodes locally)."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from . import limits
from .base import CPU, GPU, MEMORY, TPU, CpuQuantity, Document, Duration, MemoryQuantity, Model


class Accelerator(StrEnum):
    """Accelerators by their GKE names (the value of cloud.google.com/gke-accelerator or
    cloud.google.com/gke-tpu-accelerator)."""

    T4 = "nvidia-tesla-t4"
    L4 = "nvidia-l4"
    A100 = "nvidia-tesla-a100"
    A100_80GB = "nvidia-a100-80gb"
    H100 = "nvidia-h100-80gb"
    H200 = "nvidia-h200-141gb"
    TPU_V5E = "tpu-v5-lite-podslice"
    TPU_V5P = "tpu-v5p-slice"
    TPU_V6E = "tpu-v6e-slice"

    @property
    def is_tpu(self) -> bool:
        return self.value.startswith("tpu-")

    @property
    def resource(self) -> str:
        """The Kubernetes resource the accelerator is requested by."""
        return TPU if self.is_tpu else GPU

    @property
    def ray_type(self) -> str:
        """Ray's accelerator type name (ray.util.accelerators), used as ``accelerator_type:<name>``."""
        return _RAY_TYPES[self]

    @property
    def topology_dims(self) -> int:
        """2 for v5e/v6e (2D tori), 3 for v5p; 0 for GPUs."""
        return {Accelerator.TPU_V5P: 3}.get(self, 2 if self.is_tpu else 0)

    @property
    def tpu_pod_prefix(self) -> str:
        """Prefix of Ray's TPU pod type (``TPU-<prefix>-<chips>-head`` is the slice head resource)."""
        return {Accelerator.TPU_V5E: "v5litepod", Accelerator.TPU_V5P: "v5p", Accelerator.TPU_V6E: "v6e"}[self]


_RAY_TYPES = {
    Accelerator.T4: "T4",
    Accelerator.L4: "L4",
    Accelerator.A100: "A100",
    Accelerator.A100_80GB: "A100-80G",
    Accelerator.H100: "H100",
    Accelerator.H200: "H200",
    Accelerator.TPU_V5E: "TPU-V5LITEPOD",
    Accelerator.TPU_V5P: "TPU-V5P",
    Accelerator.TPU_V6E: "TPU-V6E",
}


# ---------------------------------------------------------------- provisioning

class ReservationProvisioning(Model):
    mode: Literal["reservation"] = Field(description="Capacity from a Compute Engine reservation: a fixed number of hosts (the pool's maxReplicas), paid for whether used or not.")
    reservation_name: str | None = Field(default=None, min_length=1, max_length=256, description="Name of the reservation (cloud.google.com/reservation-name); required with affinity specific.")
    reservation_project: str | None = Field(default=None, max_length=256, description="Project owning a shared reservation.")
    affinity: Literal["specific", "any"] = Field(default="specific", description="specific: the named reservation only; any: any reservation of the machine type (GKE reservation affinity ANY).")

    @model_validator(mode="after")
    def _named(self) -> ReservationProvisioning:
        if self.affinity == "specific" and not self.reservation_name:
            raise ValueError("reservationName: required when affinity is specific")
        return self


class DwsFlexProvisioning(Model):
    mode: Literal["dws-flex"] = Field(description="Dynamic Workload Scheduler flex-start: the whole request is queued and provisioned at once when capacity appears.")
    max_run_duration: Duration = Field(default=7 * 86400, gt=0, le=7 * 86400, description="Longest a flex-start node lives (at most 7 days).")
    queued: bool = Field(default=True, description="Queued provisioning (ProvisioningRequest, all-or-nothing); false for non-queued flex-start (capacity now or a stockout).")
    node_recycling_lead_time: Duration | None = Field(default=None, description="How long before a node's run time ends a replacement is provisioned (serving).")


class CalendarWindow(Model):
    start: datetime = Field(description="Start of the reserved window (RFC 3339).")
    end: datetime = Field(description="End of the reserved window (RFC 3339); at most 90 days after start.")

    @model_validator(mode="after")
    def _order(self) -> CalendarWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).total_seconds() > 90 * 86400:
            raise ValueError("a DWS calendar window is at most 90 days")
        return self


class DwsCalendarProvisioning(Model):
    mode: Literal["dws-calendar"] = Field(description="DWS calendar mode: capacity reserved for a fixed window ahead of time; no host exists outside it.")
    window: CalendarWindow = Field(description="The reserved window.")
    reservation_name: str | None = Field(default=None, min_length=1, max_length=256, description="The reservation Compute Engine creates for the calendar request (consumed as a specific reservation during the window; KubeRay: cloud.google.com/reservation-name, and the compute-class rule); without it, pods select the pool by accelerator and machine type only.")
    reservation_project: str | None = Field(default=None, max_length=256, description="Project owning that reservation, when shared.")
    drain_before: Duration = Field(default=600.0, ge=0, le=86400, description="How long before the window ends running work is checkpointed and moved elsewhere (at most 1 day).")


class SpotProvisioning(Model):
    mode: Literal["spot"] = Field(description="Spot VMs: cheap, reclaimable at any time (cloud.google.com/gke-spot).")
    reclaim_notice: Duration = Field(default=30.0, ge=0, le=120, description="Notice a reclaim gives before the host goes (GCE gives 30 s): the running training is asked to checkpoint in it.")


class OnDemandProvisioning(Model):
    mode: Literal["on-demand"] = Field(description="On-demand VMs.")


Provisioning = Annotated[
    ReservationProvisioning | DwsFlexProvisioning | DwsCalendarProvisioning | SpotProvisioning | OnDemandProvisioning,
    Field(discriminator="mode"),
]

# ---------------------------------------------------------------- pool

# Chips per host of the GKE TPU machine types rayfleet knows; used to cross-check acceleratorsPerHost.
TPU_MACHINE_CHIPS = {
    "ct5lp-hightpu-1t": 1,
    "ct5lp-hightpu-4t": 4,
    "ct5lp-hightpu-8t": 8,
    "ct5p-hightpu-4t": 4,
    "ct6e-standard-1t": 1,
    "ct6e-standard-4t": 4,
    "ct6e-standard-8t": 8,
}


def topology_chips(topology: str) -> int:
    return math.prod(int(d) for d in topology.split("x"))


class PoolSpec(Model):
    accelerator: Accelerator | None = Field(default=None, description="GKE accelerator name; empty for a CPU-only pool.")
    accelerators_per_host: int = Field(default=0, ge=0, le=16, description="GPUs or TPU chips on each host.")
    machine_type: str = Field(min_length=1, max_length=256, description="Compute Engine machine type, e.g. a3-highgpu-8g or ct5lp-hightpu-4t.")
    tpu_topology: str | None = Field(default=None, pattern=r"^\d{1,3}x\d{1,3}(x\d{1,3})?$", description="TPU slice topology, e.g. 2x4 or 2x2x2 (TPU pools only).")
    hosts_per_slice: int | None = Field(default=None, ge=1, le=limits.HOSTS_PER_SLICE_MAX, description="Hosts in one TPU slice (at most 4096); derived from the topology (chips / acceleratorsPerHost); if given it must agree.")
    cpu_per_host: CpuQuantity = Field(default=8000, description="Allocatable CPU of one host (cores or millicores, e.g. 8 or 7500m); at most 1024 cores.")
    memory_per_host: MemoryQuantity = Field(default=32 * 2**30, description="Allocatable memory of one host (e.g. 64Gi); at most 64Ti.")
    min_replicas: int = Field(default=0, ge=0, le=limits.POOL_REPLICAS_MAX, description="At most 10000. Fewest hosts (GPU/CPU pools) or slices (multi-host TPU pools) the pool keeps; it starts with these and grows when an admitted gang needs more (GKE node-pool minimum).")
    max_replicas: int = Field(ge=1, le=limits.POOL_REPLICAS_MAX, description="At most 10000. Most hosts (GPU/CPU pools) or slices (multi-host TPU pools); KubeRay worker group maxReplicas.")
    idle_timeout: Duration = Field(default=600.0, ge=0, le=limits.DURATION_MAX_S, description="Idle hosts above minReplicas are given back after this long (GKE cluster autoscaler scale-down-unneeded-time, 10 minutes by default).")
    provisioning: Provisioning = Field(default_factory=lambda: OnDemandProvisioning(mode="on-demand"), description="Where the capacity comes from: reservation, dws-flex, dws-calendar, spot or on-demand.")
    price_per_host_hour: float = Field(default=0.0, ge=0, le=limits.PRICE_MAX, description="Price of one host for one hour, in USD (for cost attribution); at most 1000000.")
    zone: str | None = Field(default=None, max_length=256, description="GCP zone of the node pool.")

    @model_validator(mode="after")
    def _check_shape(self) -> PoolSpec:
        acc = self.accelerator
        if acc is None:
            if self.accelerators_per_host:
                raise ValueError("acceleratorsPerHost: a pool without an accelerator must have 0 accelerators per host")
            if self.tpu_topology:
                raise ValueError("tpuTopology: only TPU pools have a topology")
            return self
        if self.accelerators_per_host < 1:
            raise ValueError(f"acceleratorsPerHost: a {acc.value} pool needs at least 1 accelerator per host")
        if not acc.is_tpu:
            if self.tpu_topology or self.hosts_per_slice:
                raise ValueError("tpuTopology: only TPU pools have a topology or hostsPerSlice")
            return self
        if not self.tpu_topology:
            raise ValueError(f"tpuTopology: required for a {acc.value} pool (e.g. 2x4)")
        dims = self.tpu_topology.count("x") + 1
        if dims != acc.topology_dims:
            raise ValueError(f"tpuTopology: {acc.value} topologies have {acc.topology_dims} dimensions, got {self.tpu_topology!r}")
        known = TPU_MACHINE_CHIPS.get(self.machine_type)
        if known is not None and known != self.accelerators_per_host:
            raise ValueError(f"acceleratorsPerHost: machine type {self.machine_type} has {known} TPU chips per host, not {self.accelerators_per_host}")
        chips = topology_chips(self.tpu_topology)
        if chips % self.accelerators_per_host:
            raise ValueError(f"tpuTopology: {self.tpu_topology} has {chips} chips, not a multiple of acceleratorsPerHost={self.accelerators_per_host}")
        derived = chips // self.accelerators_per_host
        if self.hosts_per_slice is not None and self.hosts_per_slice != derived:
            raise ValueError(
                f"hostsPerSlice: topology {self.tpu_topology} is {chips} chips = {derived} hosts x {self.accelerators_per_host} chips, not {self.hosts_per_slice} hosts"
            )
        object.__setattr__(self, "hosts_per_slice", derived)
        return self

    @model_validator(mode="after")
    def _check_replicas(self) -> PoolSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas: must not exceed maxReplicas")
        return self

    # -- derived facts used by quota, backends and manifests

    @property
    def is_tpu(self) -> bool:
        return self.accelerator is not None and self.accelerator.is_tpu

    @property
    def slice_hosts(self) -> int:
        """Hosts per replica: hosts per TPU slice, or 1."""
        return self.hosts_per_slice or 1

    @property
    def max_hosts(self) -> int:
        return self.max_replicas * self.slice_hosts

    @property
    def min_hosts(self) -> int:
        return self.min_replicas * self.slice_hosts

    @property
    def tpu_chips_per_slice(self) -> int:
        return topology_chips(self.tpu_topology) if self.tpu_topology else 0

    def host_resources(self) -> dict[str, int]:
        """What one host offers, in canonical units."""
        out = {CPU: self.cpu_per_host, MEMORY: self.memory_per_host}
        if self.accelerator is not None:
            out[self.accelerator.resource] = self.accelerators_per_host
        return out

    def offers(self, resource: str) -> bool:
        return resource in self.host_resources()


class PoolStatus(Model):
    ready_hosts: int = Field(default=0, ge=0, description="Hosts up and registered.")
    state: Literal["Pending", "Provisioning", "Ready", "Degraded", "Deleting"] = Field(default="Pending", description="Lifecycle state.")
    message: str = Field(default="", description="Why the pool is in its state.")


class Pool(Document):
    KIND = "Pool"
    kind: Literal["Pool"] = "Pool"
    spec: PoolSpec = Field(description="The pool's shape and provisioning.")
    status: PoolStatus = Field(default_factory=PoolStatus, description="Observed state.")
