"""What the simulated backend keeps per gang, run and service (plain records, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...api import PoolSpec
from ..base import RunState, RunStatus
from ..placement import GangPlan
from .hosts import Host
from .scenario import RunScript, ServiceScript


@dataclass(eq=False)
class Gang:
    key: str                         # run id, or svc:<name>:<group>
    plan: GangPlan
    hosts: list[Host] = field(default_factory=list)
    placed_at: float | None = None


@dataclass(eq=False)
class SimRun:
    run_id: str
    job: str
    attempt: int
    gang: Gang
    script: RunScript
    runtime: float
    created_at: float
    state: RunState = RunState.PENDING
    message: str = "waiting for hosts"
    started_at: float | None = None
    finished_at: float | None = None
    resumed_from: int | None = None
    final_step: int | None = None
    node_ids: tuple[str, ...] = ()
    epoch: int = 0
    log: list[str] = field(default_factory=list)
    max_run_duration: float | None = None
    hosts: tuple[str, ...] = ()               # the gang's host names (once placed), in worker order
    requested_checkpoint: int | None = None   # step of the checkpoint saved on request_checkpoint
    # (Host.shown_changes, the gang's host list, the notices on those hosts) last worked out
    notices_seen: tuple[int, list, tuple] | None = None
    # (what run_status reported, as a tuple of its fields; that RunStatus), handed back while unchanged
    status_seen: tuple[tuple, RunStatus] | None = None


@dataclass(eq=False)
class DwsRequest:
    """A queued DWS flex-start request: its hosts arrive together, or not at all."""

    id: int
    pool: str
    hosts: list[Host]
    gang: str | None                          # the gang it was asked for (None: a recycling replacement)


@dataclass(eq=False)
class Fault:
    """A scripted fault: runs on the host FAIL ``fail_after`` seconds into it (or after starting)."""

    start: float
    until: float | None                       # None: until the host's next repair
    message: str
    fail_after: float
    cleared_at: float | None = None           # the repair that ended an open-ended fault

    def active(self, t: float) -> bool:
        end = self.until if self.until is not None else (self.cleared_at if self.cleared_at is not None else float("inf"))
        return self.start <= t < end


@dataclass(eq=False)
class SimGroup:
    gang: Gang
    ready_at: float | None = None
    replacement: SimGroup | None = None   # a migration: the group brought up to take this one's place
    drain_share: float = 0.0              # draining: requests/s it was getting when it stopped taking new ones
    drain_until: float | None = None      # draining: its requests in flight are done by then


@dataclass(eq=False)
class SimService:
    name: str
    pool: str
    spec: PoolSpec
    target: int
    min_replicas: int
    max_replicas: int
    hosts_per_replica: int
    resources: dict[str, int]
    route: str
    script: ServiceScript
    wanted: int
    groups: list[SimGroup] = field(default_factory=list)
    draining: list[SimGroup] = field(default_factory=list)   # replaced or scaled-down groups finishing their requests
    seq: int = 0                     # gang keys are unique per group generation: svc:<name>:<i>.<seq>
    live_since: float | None = None  # when a group was first routed (requests arrive from then on)
    unrouted_since: float | None = None  # live, and no group routed since then: every arriving request fails
    failed: float = 0.0              # failed requests so far (expected count, reported rounded up)
    migrations: int = 0              # groups moved (replacement routed, old one drained)


def shape(plan: GangPlan) -> tuple:
    return (plan.workers, plan.strategy, tuple(sorted(plan.bundle.items())))


def package_uris(runtime_env: dict[str, Any]) -> list[str]:
    uris = []
    wd = runtime_env.get("working_dir")
    if isinstance(wd, str):
        uris.append(wd)
    uris += [m for m in runtime_env.get("py_modules") or [] if isinstance(m, str)]
    return uris
