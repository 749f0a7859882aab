"""Where Ray runs. ``make_backend`` picks the implementation the config's Cluster names."""

from __future__ import annotations

from pathlib import Path

from ..config import PlatformConfig
from .base import Backend, ClusterInfo, LaunchRequest, PoolCapacity, RunState, RunStatus, ServiceRunStatus


def make_backend(config: PlatformConfig, data_dir: str | Path, *, serve_app=None, kind: str | None = None) -> Backend:
    """``serve_app(svc, pool, pool_spec, granted) -> Serve app dict``: how a Service becomes the
    RayService's serveConfigV2 application on KubeRay (given by the server layer, which may import
    ``rayfleet.serve``; backends may not). ``kind`` overrides the Cluster's ``spec.backend``
    (``rayfleet up --backend sim``)."""
    kind = kind or (config.cluster.spec.backend if config.cluster else "local")
    if kind == "sim":
        from .sim import from_config

        return from_config(config)
    if kind == "kuberay":
        from .kuberay.client import KubeRayBackend

        return KubeRayBackend(config, serve_app=serve_app)
    from .local import LocalBackend

    return LocalBackend.from_config(config, Path(data_dir) / "ray")


__all__ = ["Backend", "ClusterInfo", "LaunchRequest", "PoolCapacity", "RunState", "RunStatus", "ServiceRunStatus", "make_backend"]
