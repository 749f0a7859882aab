"""The Backend protocol: what the controller asks of a place where Ray runs.

Two implementations: ``local.LocalBackend`` (real Ray processes on this machine, simulated hosts as
Ray nodes) and ``kuberay.client.KubeRayBackend`` (RayCluster/RayJob/RayService on GKE). The
controller only ever talks to this protocol.

Every launch is keyed by ``run_id`` = ``<job id>-<attempt>-<uid prefix>`` (:func:`run_id_for`; the
uid is the job's server-set metadata.uid, so a new job with an old name never meets an old run): the controller writes the intent
(job, attempt) to its store *before* calling ``launch``, and after a crash asks ``run_status`` /
``list_runs`` whether that attempt exists, so a launch is never lost or done twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..api import Accelerator, PlacementStrategy, PoolSpec, Service, ServiceState, TrainJob


class RunState(StrEnum):
    PENDING = "PENDING"        # placement group / RayJob created, not all workers up yet
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"          # the program failed (counts against maxRestarts)
    STOPPED = "STOPPED"        # stopped on request (user stop or preemption), or by the backend (suspended)
    LOST = "LOST"              # a host of the gang died, or the run vanished with its cluster
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # an in-cluster run deadline (RayJob activeDeadlineSeconds) ended it
    STOCKOUT = "STOCKOUT"      # the provisioning mode answered "no capacity" now (non-queued DWS, an on-demand stockout, a ProvisioningRequest Failed)

    @property
    def terminal(self) -> bool:
        return self not in (RunState.PENDING, RunState.RUNNING)


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    backend: str
    address: str | None            # Ray GCS address (local) or RayCluster name (kuberay)
    dashboard_url: str | None      # Ray dashboard / Jobs API
    serve_url: str | None = None   # Serve HTTP proxy


@dataclass(frozen=True)
class PoolCapacity:
    pool: str
    hosts: int            # hosts configured (max)
    ready_hosts: int      # hosts alive now
    free_hosts: int       # alive hosts with no gang bundle on them (and not cordoned or draining)
    provisioning_hosts: int = 0  # hosts asked for and not there yet
    cordoned_hosts: int = 0      # alive hosts that take no new work (faulty, or draining before they go)


class NoticeKind(StrEnum):
    """Why a host of a run will go, announced before it goes."""

    RECLAIM = "reclaim"          # spot preemption: the host is taken back at ``deadline`` (GCE gives 30 s)
    RECYCLE = "recycle"          # a DWS host reaches its maximum run time at ``deadline``; a replacement is asked for
    WINDOW_END = "window-end"    # the DWS calendar window the host belongs to closes at ``deadline``
    UNHEALTHY = "unhealthy"      # the host was cordoned as faulty; its work should move
    DRAIN = "cluster-drain"      # the host's cluster is cordoned and drained: its work moves to another cluster


@dataclass(frozen=True)
class Notice:
    """A disruption announced ahead: the host ``host`` goes at ``deadline`` (epoch seconds; None:
    no fixed time). The controller asks the run to checkpoint now and then moves it."""

    kind: NoticeKind
    host: str
    deadline: float | None = None
    message: str = ""


class HostPhase(StrEnum):
    PROVISIONING = "provisioning"  # asked for, not up yet
    READY = "ready"                # up, takes work
    DRAINING = "draining"          # a notice is out: keeps its runs, takes no new work
    CORDONED = "cordoned"          # faulty: takes no new work until repaired
    REPAIRING = "repairing"        # being repaired (local: its Ray node restarted; GKE: auto-repair)


@dataclass(frozen=True)
class HostInfo:
    """One host as the backend sees it (absent hosts are not listed)."""

    name: str
    pool: str
    phase: HostPhase
    node_id: str | None = None          # Ray node id (local, sim) or Kubernetes node name (GKE)
    since: float | None = None          # when it entered its phase (epoch seconds)
    expires_at: float | None = None     # when it goes for good (DWS max run time, calendar window end, reclaim deadline)
    healthy: bool = True                # False: the backend reports it unhealthy (GKE node conditions)
    message: str = ""


@functools.lru_cache(maxsize=1 << 16)   # the controller asks for every launched job's each pass
def run_id_for(job_id: str, attempt: int, uid: str | None = None) -> str:
    """The backend run id of one attempt: ``<job id>-<attempt>-<first 12 hex digits of the uid>``
    (``<job id>-<attempt>`` for a job stored before uids existed)."""
    if not uid:
        return f"{job_id}-{attempt}"
    return f"{job_id}-{attempt}-{uid.replace('-', '')[:12]}"


def checkpoint_key(job_id: str, uid: str | None) -> str:
    """``<job>/<uid>``: a new job with an old name starts with no checkpoints (a job stored before
    uids existed keeps ``<job>``)."""
    return f"{job_id}/{uid}" if uid else job_id


def checkpoint_dir(job: TrainJob, root: str | Path | None) -> str | None:
    """Where a job's checkpoints live, the same for every attempt (resume reads it) and on every
    backend: ``<checkpoint.storagePath>/<job>`` when given (a directory or a URI such as
    ``gs://bucket/prefix``, joined as text: the user's own storage, so a resubmission under the same
    name resumes from it), else ``<root>/checkpoints/<job>/<uid>``. ``root`` None: the backend picks
    the root (the local backend: its Ray side's directory, which its Ray processes may write; the
    control service's data directory is closed to them), and the controller passes None."""
    if job.spec.checkpoint.storage_path:
        return job.spec.checkpoint.storage_path.rstrip("/") + "/" + job.name
    if root is None:
        return None
    return str(Path(root) / "checkpoints" / checkpoint_key(job.name, job.metadata.uid))


@dataclass(frozen=True)
class LaunchRequest:
    """One attempt of an admitted train job, placed on one pool."""

    job_id: str
    attempt: int
    pool: str
    pool_spec: PoolSpec
    workers: int
    resources_per_worker: dict[str, int]          # canonical units (api.base)
    accelerator: Accelerator | None
    placement_strategy: PlacementStrategy | None  # None: PACK for GPU/CPU, STRICT_SPREAD for multi-host TPU
    entrypoint: str | None = None                  # a shell command (Ray Jobs style) ...
    train_app: str | None = None                   # ... or a train app module run by rayfleet's TorchTrainer launcher
    train_config: dict[str, Any] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    checkpoint_dir: str | None = None              # stable across attempts: resume reads it
    max_run_duration: float | None = None         # in-cluster backstop only (KubeRay activeDeadlineSeconds); the controller owns the deadline
    metadata: dict[str, str] = field(default_factory=dict)
    uid: str = ""                                  # the job's metadata.uid (part of the run id)

    @property
    def run_id(self) -> str:
        return run_id_for(self.job_id, self.attempt, self.uid)

    @classmethod
    def for_job(cls, job: TrainJob, pool: str, pool_spec: PoolSpec, *, attempt: int, checkpoint_dir: str | None) -> LaunchRequest:
        """Attempt ``attempt`` of an admitted TrainJob on ``pool``."""
        gang = job.spec.gang
        app = job.spec.train_app
        return cls(
            job_id=job.name,
            attempt=attempt,
            pool=pool,
            pool_spec=pool_spec,
            workers=gang.workers,
            resources_per_worker=dict(gang.resources_per_worker),
            accelerator=gang.accelerator or pool_spec.accelerator,
            placement_strategy=gang.placement_strategy,
            entrypoint=job.spec.entrypoint,
            train_app=app.module if app else None,
            train_config=dict(app.config) if app else {},
            runtime_env=dict(job.spec.runtime_env),
            checkpoint_dir=checkpoint_dir,
            max_run_duration=job.spec.max_run_duration,
            metadata={"rayfleet.io/job": job.name, "rayfleet.io/queue": job.spec.queue,
                      "checkpoint_num_to_keep": str(job.spec.checkpoint.num_to_keep), **job.spec.labels},
            uid=job.metadata.uid or "",
        )


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: RunState
    message: str = ""
    started_at: float | None = None         # epoch seconds when all workers were running
    finished_at: float | None = None
    last_checkpoint_step: int | None = None
    node_ids: tuple[str, ...] = ()           # Ray node ids of the gang's bundles
    resumed_from_step: int | None = None     # checkpointed step this attempt resumed from (None: from scratch)
    exit_code: int | None = None             # the entrypoint's exit code once it ended, where the backend knows it
    notices: tuple[Notice, ...] = ()         # disruptions announced on the gang's hosts (reclaim, recycle, window end, unhealthy)
    hosts: tuple[str, ...] = ()              # host names of the gang's bundles (for faulty-host accounting)


@dataclass(frozen=True)
class ServiceRunStatus:
    """What the backend sees of a deployed Serve service."""

    name: str
    replicas_target: int            # replicas the deployment is allowed (what quota granted)
    replicas_running: int           # whole leader-worker groups routed to
    replicas_wanted: int            # what load asks for (Serve autoscaling's decision, uncapped)
    url: str | None = None
    healthy: bool = True
    message: str = ""               # why the counts differ (one line)
    state: ServiceState | None = None  # the Service's state as the backend sees it (None: derive from the counts)
    groups: tuple[GroupRunStatus, ...] = ()  # each replica group, in index order (where the backend knows them)
    notices: tuple[Notice, ...] = ()         # disruptions announced on the hosts of the service's groups
    failed_requests: int | None = None       # requests that failed since the service went live (None: the backend does not count)


@dataclass(frozen=True)
class GroupRunStatus:
    """One replica group of a deployed service: where it runs and whether it is moving."""

    index: int
    pool: str
    hosts: tuple[str, ...] = ()     # hosts of its bundles (empty: not placed)
    ready: bool = False             # whole and routed to
    moving_to: str | None = None    # a replacement is being brought up on this pool (a migration in progress)
    replacement_hosts: tuple[str, ...] = ()  # hosts the replacement is placed on (empty: not placed yet)


@runtime_checkable
class Backend(Protocol):
    """What the controller drives. Implementations must be safe to call from one thread at a time."""

    name: str

    def up(self) -> ClusterInfo:
        """Bring the cluster up (idempotent: an up cluster is returned as is)."""

    def down(self) -> None:
        """Tear everything down; no process or cloud object of the cluster remains."""

    def info(self) -> ClusterInfo | None:
        """The cluster if it is up, else None."""

    def capacity(self) -> dict[str, PoolCapacity]:
        """Hosts per pool: configured, alive, free."""

    def launch(self, req: LaunchRequest) -> str:
        """Start one attempt; returns the run id. Idempotent per run id."""

    def stop(self, run_id: str, *, reason: str = "stopped") -> None:
        """Stop a run and free its gang (no-op if it is gone)."""

    def run_status(self, run_id: str) -> RunStatus | None:
        """Current state of a run, or None if the backend does not know it."""

    def logs(self, run_id: str) -> str:
        """Driver and worker output of a run so far."""

    def list_runs(self) -> list[str]:
        """Run ids the backend knows of (for reconciling after a controller restart)."""

    def upload_package(self, uri: str, data: bytes) -> None:
        """Make a runtime_env package (``gcs://_ray_pkg_<hash>.zip``, as uploaded by ``ray job
        submit --working-dir``) available to the cluster, so a run's runtime_env can name it."""


@runtime_checkable
class CapacityBackend(Protocol):
    """What a backend whose capacity comes and goes offers the controller (sim, local, KubeRay):
    its hosts, asking a run to checkpoint now (before a notice runs out), and cordoning faulty
    hosts. Pools grow and shrink inside the backend (its autoscaler: ``capacity.scaling``)."""

    def hosts(self) -> list[HostInfo]:
        """Every host that exists or is being provisioned, with its phase."""

    def request_checkpoint(self, run_id: str) -> None:
        """Ask a running training to save a checkpoint now (no-op if the run is gone). Train apps
        see it through ``rayfleet.train.notice`` (docs/capacity.md)."""

    def cordon(self, host: str, reason: str) -> None:
        """Place nothing new on ``host`` and start its repair; idempotent."""

    def uncordon(self, host: str) -> None:
        """Return a repaired host to service; idempotent."""


@runtime_checkable
class ReleasingBackend(Protocol):
    """A backend that keeps objects for every run until told it may drop them (KubeRay: a RayJob,
    its notice ConfigMap, a DWS request and its PodTemplate, which would otherwise pile up in the
    API server, one set per attempt). The controller releases a run once its end is in the store
    (its logs saved with it), and at start-up or take-over every run no unfinished job runs."""

    def release_run(self, run_id: str) -> None:
        """Drop what the backend keeps for an ended run; no-op for a run that is gone."""


@runtime_checkable
class TimedBackend(Protocol):
    """A backend that knows when its next change of its own is due (the simulated backend: a run
    that ends, a host that comes up): the controller's loop wakes then instead of at its next tick,
    as a watch event would wake it on a real cluster."""

    def next_event_at(self) -> float | None:
        """When the next scheduled change is due (it may turn out to change nothing), on the
        backend's clock; None when nothing is scheduled."""


@runtime_checkable
class WatchingBackend(Protocol):
    """A backend that keeps its runs' state from watches (KubeRay: list once, then watch the API
    server) instead of being asked per run: the controller starts the watches when it starts, and
    each change wakes it. Local and sim answer ``run_status`` from memory already."""

    def start_watching(self, on_change: Callable[[], None] | None = None) -> None:
        """Start the watches (idempotent); ``on_change`` is called when a run's state may have changed."""

    def stop_watching(self) -> None:
        """Stop the watches (idempotent); reads go to the cluster again."""


@runtime_checkable
class ServingBackend(Protocol):
    """A backend that owns Ray Serve itself (KubeRay: RayService objects). On the local backend the
    control service talks to the cluster's Serve REST API instead (``server/serving.py``)."""

    def deploy_service(self, svc: Service, pool: str, pool_spec: PoolSpec, replicas: int) -> None:
        """Deploy or update a Serve service on ``pool`` with exactly ``replicas`` leader-worker groups
        allowed (Serve autoscaling moves within [minReplicas, replicas]). Idempotent."""

    def service_status(self, name: str) -> ServiceRunStatus | None:
        """The deployed service's replicas and URL, or None if it is not deployed."""

    def delete_service(self, name: str) -> None:
        """Remove a service; requests in flight finish first (graceful drain). No-op if absent."""


@runtime_checkable
class GroupMigrationBackend(Protocol):
    """A ServingBackend that can move replica groups without a failed request (sim; the local path
    does it in ``server/serving.py``; KubeRay's RayService has no per-group move, see docs/serve.md)."""

    def migrate_groups(self, name: str, away_from: set[str], *, pool: str | None = None, pool_spec: PoolSpec | None = None) -> list[int]:
        """For each group of service ``name`` with a host in ``away_from``: bring a replacement group
        up (on ``pool``, default the group's own pool; never on a host that takes no new work), route
        traffic to it once it is whole and ready, then drain the old group (requests in flight
        finish, then its hosts are freed). Returns the indexes of the groups now moving (those
        already moving included); idempotent. Progress: ``ServiceRunStatus.groups[i].moving_to``."""
