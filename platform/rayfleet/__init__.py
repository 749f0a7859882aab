"""rayfleet: a Ray-native ML platform.

Laptop API::

    import rayfleet
    fleet = rayfleet.connect("http://127.0.0.1:8265", token="...")
    job = fleet.submit(rayfleet.TrainJob(...))
    job.wait()
"""

from __future__ import annotations

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
from .errors import RayfleetError
from .version import __version__


def connect(url: str = "http://127.0.0.1:8265", token: str | None = None, *, timeout: float = 30.0):
    """Connect to a rayfleet control service; returns a :class:`rayfleet.client.Fleet`."""
    from .client import FleetClient

    return FleetClient(url, token=token, timeout=timeout)


__all__ = [
    "Accelerator", "AutoscalingSpec", "GangSpec", "ReplicaGroupSpec", "Service", "ServiceSpec",
    "TrainJob", "TrainJobSpec", "RayfleetError", "connect", "__version__",
]
