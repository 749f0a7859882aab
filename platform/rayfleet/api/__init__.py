"""rayfleet's resource model (pydantic v2). Pure: no Ray, no I/O.

Every stored kind is a :class:`~rayfleet.api.base.Document` with ``metadata``, ``spec`` and ``status``.
"""

from __future__ import annotations

from .base import (
    API_VERSION,
    CPU,
    GPU,
    MEMORY,
    RESOURCE_NAMES,
    TPU,
    Document,
    Model,
    ObjectMeta,
    format_quantity,
    parse_duration,
    parse_quantity,
)
from .cluster import (
    ClientConnection,
    Cluster,
    ClusterSpec,
    ClusterStatus,
    HostHealthPolicy,
    KubeRaySpec,
    LocalBackendSpec,
    SimSpec,
)
from .flavor import ActiveMigration, ComputeClass, ComputeClassSpec, ComputeClassStep, Flavor, FlavorSpec
from .job import (
    CapacityWait,
    CheckpointSpec,
    FailurePolicy,
    GangSpec,
    Interruption,
    JobState,
    NoticeRecord,
    PendingReason,
    PlacementStrategy,
    TrainAppRef,
    TrainJob,
    TrainJobSpec,
    TrainJobStatus,
)
from .pool import Accelerator, Pool, PoolSpec, PoolStatus
from .queue import (
    Cohort,
    CohortSpec,
    PriorityClass,
    PriorityClassSpec,
    Queue,
    QueueSpec,
    QueueStatus,
    Team,
    TeamSpec,
)
from .service import AutoscalingSpec, ReplicaGroupSpec, Service, ServiceSpec, ServiceState, ServiceStatus

#: Kinds a cluster config file may hold, by ``kind:``.
CONFIG_KINDS: dict[str, type[Document]] = {
    k.KIND: k for k in (Cluster, Pool, Flavor, ComputeClass, Cohort, Queue, PriorityClass, Team)
}
#: Kinds users submit through the API.
WORKLOAD_KINDS: dict[str, type[Document]] = {k.KIND: k for k in (TrainJob, Service)}
ALL_KINDS: dict[str, type[Document]] = {**CONFIG_KINDS, **WORKLOAD_KINDS}

__all__ = [
    "API_VERSION", "CPU", "GPU", "MEMORY", "TPU", "RESOURCE_NAMES", "Document", "Model", "ObjectMeta",
    "format_quantity", "parse_duration", "parse_quantity",
    "ClientConnection", "Cluster", "ClusterSpec", "ClusterStatus", "HostHealthPolicy", "KubeRaySpec", "LocalBackendSpec", "SimSpec",
    "ActiveMigration", "ComputeClass", "ComputeClassSpec", "ComputeClassStep", "Flavor", "FlavorSpec",
    "CapacityWait", "CheckpointSpec", "FailurePolicy", "GangSpec", "Interruption", "JobState", "NoticeRecord", "PlacementStrategy",
    "TrainAppRef", "TrainJob", "TrainJobSpec", "TrainJobStatus",
    "Accelerator", "Pool", "PoolSpec", "PoolStatus",
    "Cohort", "CohortSpec", "PendingReason", "PriorityClass", "PriorityClassSpec", "Queue", "QueueSpec", "QueueStatus",
    "Team", "TeamSpec",
    "AutoscalingSpec", "ReplicaGroupSpec", "Service", "ServiceSpec", "ServiceState", "ServiceStatus",
    "CONFIG_KINDS", "WORKLOAD_KINDS", "ALL_KINDS",
]
