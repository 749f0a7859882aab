"""Where Ray runs. ``make_backend`` picks the implementation the config's Cluster names."""

from __future__ import annotations

from pathlib import Path

from ..config import PlatformConfig
from .base import Backend, ClusterInfo, LaunchRequest, PoolCapacity, RunState, RunStatus, ServiceRunStatus


def make_backend(config: PlatformConfig, data_dir: str | Path) -> Backend:
    kind = config.cluster.spec.backend if config.cluster else "local"
    if kind == "kuberay":
        from .kuberay.client import KubeRayBackend

        return KubeRayBackend(config)
    from .local import LocalBackend

    return LocalBackend.from_config(config, Path(data_dir) / "ray")


__all__ = ["Backend", "ClusterInfo", "LaunchRequest", "PoolCapacity", "RunState", "RunStatus", "ServiceRunStatus", "make_backend"]
