"""Training jobs: Ray Train gangs admitted whole through quota."""

from __future__ import annotations

from datetime import datetime
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
    Text,
    WorkloadMeta,
)
from .pool import Accelerator


class PlacementStrategy(StrEnum):
    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"


class GangSpec(Model):
    workers: int = Field(default=1, ge=1, le=limits.WORKERS_MAX, description="Number of workers (Ray Train ScalingConfig.num_workers), 1 to 4096; all start together or none does.")
    resources_per_worker: Resources = Field(default_factory=lambda: {"cpu": 1000}, description="Resources each worker needs, e.g. {cpu: 1, nvidia.com/gpu: 8}.")
    accelerator: Accelerator | None = Field(default=None, description="Accelerator the workers need (GKE name); restricts the job to flavors of matching pools.")
    placement_strategy: PlacementStrategy | None = Field(default=None, description="Placement group strategy; default PACK for GPUs, STRICT_SPREAD (one host each, one slice) for multi-host TPU.")

    @model_validator(mode="after")
    def _accel(self) -> GangSpec:
        wants = [r for r in ACCELERATOR_RESOURCES if self.resources_per_worker.get(r)]
        if len(wants) > 1:
            raise ValueError("resourcesPerWorker: a worker asks for either nvidia.com/gpu or google.com/tpu, not both")
        if self.accelerator is not None:
            need = self.accelerator.resource
            if wants and wants[0] != need:
                raise ValueError(f"accelerator: {self.accelerator.value} is requested by {need}, but resourcesPerWorker asks for {wants[0]}")
        elif wants:
            pass  # any pool offering the resource will do
        return self

    def total(self) -> dict[str, int]:
        return {k: v * self.workers for k, v in self.resources_per_worker.items()}


class TrainAppRef(Model):
    module: str = Field(pattern=r"^[A-Za-z_][\w.]*$", max_length=256, description="Python module of a train app, e.g. train_apps.ddp_synthetic.")
    config: JsonObject = Field(default_factory=dict, description="Keyword config passed to the app's train loop; at most 256 KiB as JSON.")


class CheckpointSpec(Model):
    storage_path: Text | None = Field(default=None, description="Where checkpoints are kept (a directory or gs:// path); default: the service's data directory.")
    num_to_keep: int = Field(default=2, ge=1, le=limits.CHECKPOINTS_KEPT_MAX, description="Checkpoints kept per job (1 to 1000).")


class FailurePolicy(Model):
    """Failures and disruptions are told apart (as Kubernetes' podFailurePolicy does with DisruptionTarget).

    A failure: the run's program failed (the entrypoint or train loop exited with an error). A
    disruption: the job was interrupted by something other than its program: quota preemption, a
    lost or reclaimed host, a run gone with its cluster or stopped/suspended by the backend, a capacity
    fallback or resubmission along the compute class, a launch the backend failed. Each is counted
    on its own; the rule lives in ``rayfleet.server.transitions``.
    """

    max_restarts: int = Field(default=3, ge=0, le=limits.RESTARTS_MAX, description="Requeues after failures (the program failed) before the job fails with reason BackoffLimitExceeded and its last error; at most 1000. Disruptions never count here.")
    max_disruptions: int = Field(default=30, ge=0, le=10000, description="Requeues after disruptions (preemption, host lost, run lost/stopped/suspended by the backend, capacity fallback or resubmission, failed launch) before the job fails with reason DisruptionLimitExceeded.")
    disruption_backoff: Duration = Field(default=10.0, ge=0, description="After a backend disruption (host lost, run lost/stopped/suspended, failed launch) the job is not considered by quota for backoff x 2^(n-1) seconds (n: disruptions so far), at most 10 minutes; see status.notBefore. Preemptions and capacity fallbacks requeue at once.")


class TrainJobSpec(Model):
    entrypoint: str | None = Field(default=None, min_length=1, description="Shell command run as the job's driver (as in `ray job submit -- CMD`); at most 64 KiB.")
    train_app: TrainAppRef | None = Field(default=None, description="A train app run by rayfleet's TorchTrainer launcher; alternative to entrypoint.")
    queue: Name = Field(description="Queue (ClusterQueue) the job is admitted through.")
    priority_class: Name | None = Field(default=None, description="Priority class; default: the class marked default, else priority 0.")
    labels: Labels = Field(default_factory=dict, description="Labels (team, cost centre, experiment) carried into metrics and cost reports; at most 64, values up to 1024 characters.")
    gang: GangSpec = Field(default_factory=GangSpec, description="The gang: workers x resources, all reserved at once.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpoint storage.")
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy, description="How often to restart after failures.")
    max_run_duration: Duration | None = Field(default=None, gt=0, description="Longest the job may run, counted from when its first attempt started running (requeues included). Past it the controller stops the job and it ends FAILED with reason DeadlineExceeded, never requeued. On GKE each RayJob also carries it as activeDeadlineSeconds, an in-cluster backstop whose report ends the job the same way. At most 90 days.")
    runtime_env: JsonObject = Field(default_factory=dict, description="Ray runtime_env (working_dir, pip, env_vars, ...); at most 256 KiB as JSON.")

    @model_validator(mode="after")
    def _one_program(self) -> TrainJobSpec:
        if self.entrypoint is not None and len(self.entrypoint.encode()) > limits.ENTRYPOINT_MAX_BYTES:
            raise ValueError(f"entrypoint: is {len(self.entrypoint.encode())} bytes; at most {limits.ENTRYPOINT_MAX_BYTES} bytes (64 KiB)")
        if (self.entrypoint is None) == (self.train_app is None):
            raise ValueError("entrypoint: give exactly one of entrypoint or trainApp")
        return self


class JobState(StrEnum):
    QUEUED = "QUEUED"          # waiting for quota
    ADMITTED = "ADMITTED"      # quota granted, launch pending
    STARTING = "STARTING"      # placement group / workers starting
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"        # stopped by a user

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)


class PendingReason(StrEnum):
    """Why a QUEUED job is not admitted yet, as a code (``TrainJobStatus.pendingReason``, beside the
    message in words; ``/metrics`` counts waiting jobs by it)."""

    QUEUED = "Queued"                                        # not yet offered to quota (behind its queue's heads)
    WAITING_FOR_QUOTA = "WaitingForQuota"                    # the quota it needs is in use now
    EXCEEDS_QUOTA = "ExceedsQuota"                           # more than its queue could ever get
    NO_MATCHING_FLAVOR = "NoMatchingFlavor"                  # no flavor of its queue can take it
    STRICT_FIFO_BLOCKED = "StrictFIFOBlocked"                # behind a StrictFIFO head that waits
    QUEUE_NOT_FOUND = "QueueNotFound"                        # its queue is not in the config
    DISPLACED = "Displaced"                                  # admitted, then displaced in the same cycle
    WAITING_FOR_CALENDAR_WINDOW = "WaitingForCalendarWindow"  # its flavors' DWS calendar windows are closed
    BACKOFF = "Backoff"                                      # requeued after a disruption, held back until notBefore


class CapacityWait(Model):
    flavor: str = Field(description="Flavor whose machines the job waits for.")
    since: datetime = Field(description="First launch on that flavor (its compute-class step's waitForCapacity runs from here).")


class NoticeRecord(Model):
    kind: Literal["reclaim", "recycle", "window-end", "unhealthy", "cluster-drain", "migrate"] = Field(description="What was announced (cluster-drain: the run's cluster is drained; migrate: a preferred compute-class step has room again).")
    host: str = Field(default="", description="The host that goes.")
    at: datetime = Field(description="When the notice was seen.")
    deadline: datetime | None = Field(default=None, description="When the host goes.")
    checkpoint_step: int | None = Field(default=None, description="The last checkpoint step when the notice came (the attempt moves once a later one is saved, or at the deadline).")


class Interruption(Model):
    at: datetime = Field(description="When the interruption happened.")
    attempt: int = Field(description="Attempt that was interrupted.")
    reason: Literal["preempted", "host-failure", "failure", "capacity", "disrupted", "reclaimed", "recycled", "window-end", "migrated", "stockout", "unhealthy-host",
                    "cluster-drained"] = Field(
        description="Why: preempted (quota), host-failure (a host of the gang or the run's cluster was lost), disrupted (the backend stopped or suspended the run), "
        "reclaimed (a spot host was taken back), recycled (a DWS host reached its run time), window-end (a DWS calendar window closed), migrated (moved back to a "
        "preferred compute-class step), stockout (the provisioning mode had no capacity), unhealthy-host (a host of the gang was cordoned as faulty), "
        "cluster-drained (its cluster was cordoned and drained: the job moved to another), failure (the program failed; counts toward maxRestarts).")
    message: str = Field(default="", description="Details.")
    recovered_at: datetime | None = Field(default=None, description="When the next attempt was running again.")
    resumed_from_step: int | None = Field(default=None, description="Checkpointed step the next attempt resumed from.")


class TrainJobStatus(Model):
    state: JobState = Field(default=JobState.QUEUED, description="Lifecycle state.")
    attempt: int = Field(default=0, ge=0, description="Current attempt number (0 before the first launch).")
    restarts: int = Field(default=0, ge=0, description="Failures so far (the program failed); counted against failurePolicy.maxRestarts.")
    disruptions: int = Field(default=0, ge=0, description="Disruptions so far (preemption, host lost, run lost or stopped by the backend, capacity fallback, failed launch); counted against failurePolicy.maxDisruptions.")
    not_before: datetime | None = Field(default=None, description="Backoff after a backend disruption: quota does not consider the queued job before this time.")
    reason: Literal["Succeeded", "Stopped", "BackoffLimitExceeded", "DisruptionLimitExceeded", "DeadlineExceeded"] | None = Field(
        default=None, description="Why the job ended (set with a terminal state): DeadlineExceeded when maxRunDuration passed, BackoffLimitExceeded after maxRestarts failures, DisruptionLimitExceeded after maxDisruptions disruptions.")
    flavor: str | None = Field(default=None, description="Flavor quota admitted the job on.")
    pool: str | None = Field(default=None, description="Pool the job runs on.")
    cluster: str | None = Field(default=None, description="Cluster the latest attempt was launched on, on a platform of several clusters (None with one).")
    borrowed: dict[str, int] = Field(default_factory=dict, description="Quota borrowed from the cohort for this admission.")
    message: str = Field(default="", description="Why the job is in its state (waiting reason, last error).")
    pending_reason: PendingReason | None = Field(
        default=None, description="While QUEUED: why it is not admitted yet, as a code (Queued, WaitingForQuota, ExceedsQuota, NoMatchingFlavor, "
                                  "StrictFIFOBlocked, QueueNotFound, Displaced, WaitingForCalendarWindow, Backoff); None in other states.")
    estimated_start: datetime | None = Field(
        default=None, description="While QUEUED and once quota has looked at it: when it is expected to be admitted, from a projection of the quota "
                                  "rules over the running jobs' expected ends (their kind's average run time, at most their maxRunDuration) "
                                  "and the waiting jobs ahead of it; None when there is no estimate (see estimatedStartReason).")
    estimated_start_reason: str = Field(default="", description="What the estimated start waits for (the jobs whose ends free the quota, a quota schedule's change, a calendar window), or why there is none.")
    submitted_at: datetime | None = Field(default=None, description="When the job was accepted.")
    started_at: datetime | None = Field(default=None, description="When the first attempt started running.")
    finished_at: datetime | None = Field(default=None, description="When the job ended.")
    interruptions: list[Interruption] = Field(default_factory=list, description="Every interruption and its recovery (MTTR/MTBI inputs).")
    last_checkpoint_step: int | None = Field(default=None, description="Step of the latest checkpoint.")
    ray_job_id: str | None = Field(default=None, description="Run id of the current attempt (the backend's Ray job submission id): <name>-<attempt>-<uid prefix>.")
    stop_reason: Literal["user", "preempted", "deadline", "capacity", "resubmit", "reclaimed", "recycled", "window-end", "migrated", "unhealthy-host",
                         "cluster-drained"] | None = Field(
        default=None, description="Why a STOPPING job is being stopped."
    )
    notice: NoticeRecord | None = Field(default=None, description="A disruption announced on a host of the running attempt (reclaim, recycle, window end, unhealthy host): the checkpoint asked for and when the attempt is moved.")
    launched_at: datetime | None = Field(default=None, description="When the current attempt was launched.")
    capacity_wait: CapacityWait | None = Field(
        default=None, description="The flavor whose capacity the job waits for, since its first launch there; cleared when it runs."
    )
    capacity_skipped: list[str] = Field(
        default_factory=list, description="Flavors given up for lack of capacity since the job last ran (its compute class's next steps are tried)."
    )
    queued_at: datetime | None = Field(default=None, description="When the job last entered the queue (submission or requeue).")


class TrainJob(Document):
    KIND = "TrainJob"
    kind: Literal["TrainJob"] = "TrainJob"
    metadata: WorkloadMeta = Field(description="Id and labels.")
    spec: TrainJobSpec = Field(description="What to run and with what.")
    status: TrainJobStatus = Field(default_factory=TrainJobStatus, description="Observed state.")
