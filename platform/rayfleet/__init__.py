"""rayfleet: a Ray-native ML platform.

Laptop API::

    import rayfleet
    fleet = rayfleet.connect("http://127.0.0.1:8265", token="...")
    handle = fleet.submit(rayfleet.TrainJob(...))
    handle.wait()
    handle.job.status.state          # the typed TrainJob as last answered (a TrainJobRecord)

Errors arrive as the classes exported here (``except rayfleet.SpecError as e: e.problems``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .api import (
    Accelerator,
    AutoscalingSpec,
    GangSpec,
    ReplicaGroupSpec,
    Service,
    ServiceSpec,
    TrainJob,
    TrainJobSpec,
)
from .api.wire import ServiceRecord, ServiceSubmit, TrainJobRecord, TrainJobSubmit
from .errors import (
    BackendError,
    CapacityError,
    ConfigError,
    Conflict,
    FieldProblem,
    Forbidden,
    NotFound,
    RayfleetError,
    SpecError,
    StartupRefused,
    StorageUnavailable,
    Unauthorized,
)
from .version import __version__

if TYPE_CHECKING:
    from .client import FleetClient


def connect(url: str = "http://127.0.0.1:8265", token: str | None = None, *, timeout: float = 30.0) -> FleetClient:
    """Connect to a rayfleet control service; returns a :class:`rayfleet.client.FleetClient`."""
    from .client import FleetClient

    return FleetClient(url, token=token, timeout=timeout)


__all__ = [
    "Accelerator", "AutoscalingSpec", "GangSpec", "ReplicaGroupSpec", "Service", "ServiceSpec",
    "TrainJob", "TrainJobSpec", "TrainJobSubmit", "TrainJobRecord", "ServiceSubmit", "ServiceRecord",
    "RayfleetError", "SpecError", "ConfigError", "FieldProblem", "NotFound", "Conflict", "Unauthorized", "Forbidden",
    "CapacityError", "BackendError", "StorageUnavailable", "StartupRefused", "connect", "__version__",
]
