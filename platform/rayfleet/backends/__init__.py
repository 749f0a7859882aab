"""Where Ray runs. ``make_backend`` picks the implementation the config's Cluster names."""

from __future__ import annotations

from pathlib import Path

from ..config import PlatformConfig
from .base import Backend, ClusterInfo, LaunchRequest, PoolCapacity, RunState, RunStatus, ServiceRunStatus


def local_client_env(config: PlatformConfig, data_dir: str | Path) -> dict[str, str]:
    """What a process must have in its environment *before it imports Ray* to reach the product's
    local cluster as a client over gRPC (Ray reads ``RAY_AUTH_MODE`` once, at import): the
    cluster's token mode and token file. Empty for KubeRay."""
    kind = config.cluster.spec.backend if config.cluster else "local"
    if kind != "local":
        return {}
    backend = _local_backend(config, data_dir)
    backend.auth_token()
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(backend.token_path)}


def make_backend(config: PlatformConfig, data_dir: str | Path, *, serve_app=None, kind: str | None = None) -> Backend:
    """``serve_app(svc, pool, pool_spec, granted) -> Serve app dict``: how a Service becomes the
    RayService's serveConfigV2 application on KubeRay (given by the server layer, which may import
    ``rayfleet.serve``; backends may not). ``kind`` overrides the Cluster's ``spec.backend``
    (``rayfleet up --backend sim``)."""
    if len(config.clusters) > 1:
        return make_cluster_set(config, data_dir, serve_app=serve_app, kind=kind)
    kind = kind or (config.cluster.spec.backend if config.cluster else "local")
    if kind == "sim":
        from .sim import from_config

        return from_config(config)
    if kind == "kuberay":
        from .kuberay.client import KubeRayBackend

        return KubeRayBackend(config, serve_app=serve_app)
    return _local_backend(config, data_dir)


def make_cluster_set(config: PlatformConfig, data_dir: str | Path, *, serve_app=None, kind: str | None = None,
                clock=None) -> Backend:
    """Several Cluster documents: one member backend each (``kind`` overrides every member's),
    behind :class:`.cluster_set.ClusterSet`. Simulated members share one checkpoint store, and
    local members one checkpoint directory (as GKE clusters share a bucket), so a job moved between
    them resumes."""
    import time

    from .cluster_set import ClusterSet
    from .kuberay.manifests import cluster_pools

    checkpoints: dict[str, int] = {}
    shared = shared_checkpoint_root(data_dir)
    members: dict[str, Backend] = {}
    for name in config.clusters:
        view = config.cluster_view(name)
        member_kind = kind or view.cluster.spec.backend   # type: ignore[union-attr]
        if member_kind == "sim":
            from .sim import from_config

            members[name] = from_config(view, clock=clock, checkpoints=checkpoints)
        elif member_kind == "local":
            members[name] = _local_backend(view, Path(data_dir) / "clusters" / name, checkpoint_root=shared)
        else:
            members[name] = make_backend(view, Path(data_dir) / "clusters" / name, serve_app=serve_app, kind=member_kind)
    pools = {name: tuple(cluster_pools(config.cluster_view(name))) for name in config.clusters}
    return ClusterSet(members, pools, clock=clock or time.time)  # type: ignore[return-value]


def shared_checkpoint_root(data_dir: str | Path) -> str:
    """Where the local clusters of one platform keep their jobs' checkpoints: one directory for
    all of them, outside the data directory (closed to the clusters' Ray user)."""
    import hashlib

    return f"/tmp/rayfleet-{hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]}-checkpoints"


def _local_backend(config: PlatformConfig, data_dir: str | Path, *, checkpoint_root: str | None = None):
    """The product's local cluster: Ray's token auth on (the token is the control service's, so a
    direct `ray job submit` to the cluster cannot go around quota), and, when rayfleet runs as
    root, its Ray processes run as an unprivileged user (:mod:`rayfleet.backends.local_user`)."""
    from .local import LocalBackend
    from .local_user import default_run_as

    backend = LocalBackend.from_config(config, Path(data_dir) / "ray", auth_mode="token", run_as=default_run_as(),
                                       checkpoint_root=checkpoint_root)
    backend.start_capacity_loop()  # pools grow and shrink whether or not anyone polls
    return backend


__all__ = ["Backend", "ClusterInfo", "make_cluster_set", "LaunchRequest", "PoolCapacity", "RunState", "RunStatus", "ServiceRunStatus", "local_client_env", "make_backend"]
