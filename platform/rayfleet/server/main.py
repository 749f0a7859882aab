"""The composition root, and the control service in the foreground: ``rayfleet serve`` (``rayfleet up``
starts this in the background). :func:`assemble` builds store, quota bridge, service manager,
controller and the HTTP facade and hands each what it needs (nothing else constructs them);
:func:`serve` brings the backend's cluster up, makes tokens, and serves HTTP with uvicorn."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from ..backends import make_backend
from ..backends.base import Backend
from ..config import PlatformConfig, load_config
from .app import create_app
from .controller import Controller
from .fleet import Fleet
from .layout import DataLayout
from .leader import ElectionTiming, LeaderElector
from .packages import Packages
from .queue_heads import HEADS_PER_QUEUE
from .quota_bridge import QuotaBridge
from .services import ServiceManager
from .serving import serving_for
from .storage_guard import check_store_startup
from .store import Store, is_url, store_target
from .tokens import (
    ADMIN_TOKEN_ENV,
    check_admin_token,
    check_credentials_out,
    ensure_tokens,
    register_admin_token,
    remove_legacy_credentials,
    write_credentials,
)


def kuberay_serve_app(svc, pool: str, pool_spec, granted: int) -> dict:
    """A Service as a RayService serveConfigV2 application: the same leader-worker placement as on
    the local backend; bundle CPU from the spec (real hosts), Serve's proxy set by KubeRay."""
    from ..serve.deployer import ServeOptions, service_app_config

    return service_app_config(svc, pool, pool_spec, granted=granted, options=ServeOptions(cpu_per_bundle=None))


def assemble(config: PlatformConfig, backend: Backend, data_dir: str | Path, *,
             clock: Callable[[], float] = time.time, controller_interval: float = 1.0,
             heads_per_queue: int = HEADS_PER_QUEUE, store: str | None = None,
             election: ElectionTiming | None = None, elect: bool | None = None) -> Fleet:
    """The one place the control service's parts are built and wired (tests use it too).
    ``heads_per_queue``: the queued jobs of each queue a controller pass offers quota (:mod:`.queue_heads`).
    ``store``: a ``postgresql://`` URL or a SQLite file (default: ``rayfleet.db`` in the data directory).
    ``election``: the leader election's timing; ``elect``: whether this service elects a leader
    among the replicas of its store (default: on a PostgreSQL store, or when ``election`` is given;
    False: a test that drives the controller's passes itself)."""
    layout = DataLayout(data_dir)
    target = store_target(store, layout.data_dir)
    db = Store(target, clock=clock)
    quota = QuotaBridge(config, now=clock())
    cluster = config.cluster
    serving = serving_for(backend, cluster.spec.local.serve_port if cluster else 8000)
    services = ServiceManager(config=config, store=db, quota=quota, serving=serving)
    packages = Packages(db, layout.data_dir / "packages")
    controller = Controller(config=config, store=db, backend=backend, quota=quota, services=services, layout=layout,
                            push_packages=lambda team, env: packages.hand_over(team, env, backend), clock=clock,
                            interval=controller_interval, heads_per_queue=heads_per_queue)
    fleet = Fleet(config=config, backend=backend, store=db, layout=layout, controller=controller, services=services,
                  packages=packages, clock=clock)
    if elect if elect is not None else (election is not None or is_url(target)):
        fleet.elector = LeaderElector(db, on_started=fleet.lead, on_stopped=fleet.follow, on_following=controller.refresh_view,
                                      timing=election or ElectionTiming(), clock=clock)
        controller.may_act = fleet.elector.leading
    return fleet


def build_fleet(config_paths: list[Path], data_dir: Path, *, controller_interval: float = 1.0,
                allow_new_database: bool = False, backend_kind: str | None = None,
                credentials_out: Path | None = None, store: str | None = None,
                election: ElectionTiming | None = None) -> Fleet:
    """``credentials_out``: where the tokens minted at this start go (mode 0600, outside the data
    directory); without it they are logged once, as a warning. ``store``: as for :func:`assemble`."""
    config = load_config(config_paths)
    target = store_target(store, data_dir)   # a bad --store: exit 2, before anything starts
    bootstrap = os.environ.get(ADMIN_TOKEN_ENV)
    if bootstrap:
        check_admin_token(bootstrap)         # so is a bad bootstrap admin token
    if credentials_out is not None:
        check_credentials_out(credentials_out, data_dir)
    check_store_startup(target, data_dir, allow_new_database=allow_new_database)  # no fresh database over old state
    # The data directory (store, logs, packages) is the service's alone: closed to the Ray user.
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    backend = make_backend(config, data_dir, serve_app=kuberay_serve_app, kind=backend_kind)
    backend.up()
    fleet = assemble(config, backend, data_dir, controller_interval=controller_interval, store=store, election=election)
    if remove_legacy_credentials(data_dir):
        logging.getLogger("rayfleet").warning("removed the plaintext %s from the data directory", data_dir / "credentials.json")
    if bootstrap:   # (GKE: a Secret) the service mints nothing itself; team tokens come from `rayfleet token create`
        register_admin_token(fleet.store, bootstrap)
        minted: dict = {"admin": None, "teams": {}}
    else:
        minted = ensure_tokens(fleet.store, config)
    if credentials_out is not None:
        write_credentials(credentials_out, minted)
    elif minted["admin"] or minted["teams"]:
        logging.getLogger("rayfleet").warning(
            "minted tokens (shown once; only their hashes are kept): admin %s; %s", minted["admin"],
            ", ".join(f"team {t} {tok}" for t, tok in sorted(minted["teams"].items())) or "no team tokens")
    return fleet


def serve(config_paths: list[Path], data_dir: Path, host: str = "127.0.0.1", port: int = 8265, *,
          allow_new_database: bool = False, metrics_public: bool = False, backend: str | None = None,
          credentials_out: Path | None = None, store: str | None = None, election: ElectionTiming | None = None) -> None:
    logging.basicConfig(level=os.environ.get("RAYFLEET_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fleet = build_fleet(config_paths, data_dir, allow_new_database=allow_new_database, backend_kind=backend,
                        credentials_out=credentials_out, store=store, election=election)
    info = fleet.backend.info()
    (data_dir / "service.json").write_text(json.dumps({
        "url": f"http://{host}:{port}", "pid": os.getpid(), "ray": dataclasses.asdict(info) if info else None}))
    app = create_app(fleet, metrics_public=metrics_public)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", ws="auto")
    finally:
        fleet.close()
