"""The leader-worker group that runs inside one Serve replica.

A Service's deployment gets ``placement_group_bundles`` with one bundle per host (see
:mod:`rayfleet.serve.placement`); Serve creates one placement group per replica and puts the replica
actor, the **leader**, in bundle 0. A deployment class that mixes in :class:`LeaderWorkerGroup`
calls :meth:`LeaderWorkerGroup.start_group` from its constructor: it starts one **worker** actor
(a :class:`GroupMember` subclass) in each other bundle, waits until all of them answer, and only
then returns, so Serve marks the replica RUNNING, and routes to it, only once the group is whole.

If a member dies (its actor, its process or its host), the leader learns it at once (every member
holds a never-returning ``rf_watch`` call that fails when the member dies), marks the group broken
and, by default, kills its own replica actor. Serve sees the replica actor die, stops routing to it
(its routers drop replicas whose calls fail with ``ActorDiedError``), removes its placement group
(which takes the surviving members with it) and starts a new replica: a new placement group, a new
leader, new workers. That is LeaderWorkerSet's ``RecreateGroupOnPodRestart``, done by Serve. With
``group_fail_fast = False`` the leader only fails Serve's ``check_health`` and Serve replaces it after
its usual consecutive health-check failures.

A host about to go is drained in Ray first (a spot reclaim, a DWS recycle, a cordon). Serve moves a
replica whose leader is on it, replacement first; for a group whose *worker* is on it the leader
retires (:mod:`rayfleet.serve.group_drain` says when): it fails Serve's health check and nothing
else, still answering requests, so Serve stops it gracefully and starts a whole new group on hosts
that take new work.

Worker classes are plain classes that subclass :class:`GroupMember`; their constructor receives
``rank`` (1..size-1) and ``world_size`` keywords besides the arguments given to ``start_group``.
Members are async actors (``rf_watch`` is a coroutine); their own methods may be sync or async.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import ray
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..api.labels import LABEL_HOST, LABEL_POOL, LABEL_TPU_SLICE
from .group_drain import Member, NodeRoom, draining_deadlines, retire_reason, room_for_group
from .placement import bundle_actor_options

logger = logging.getLogger("ray.serve")


class GroupStartError(RuntimeError):
    """The group could not be made whole (a member failed to start or landed in the wrong place)."""


class GroupBrokenError(RuntimeError):
    """A member of the group died; the replica is being replaced."""


class GroupRetiringError(RuntimeError):
    """A member's host is draining: the group fails its health check (and only that) so that Serve
    replaces it, while it still answers requests."""


def _flat(raw: dict[str, Any] | None) -> dict[str, str]:
    """Node labels as one string each (Ray may give a label's values as a list)."""
    return {k: str(v[0] if isinstance(v, list | tuple) and v else v) for k, v in (raw or {}).items()}


def _labels() -> dict[str, str]:
    return _flat(ray.get_runtime_context().get_node_labels())


def _member_info(rank: int, world_size: int) -> dict[str, Any]:
    ctx = ray.get_runtime_context()
    labels = _labels()
    return {
        "rank": rank,
        "worldSize": world_size,
        "nodeId": ctx.get_node_id(),
        "host": labels.get(LABEL_HOST),
        "pool": labels.get(LABEL_POOL),
        "slice": labels.get(LABEL_TPU_SLICE),
        "pid": os.getpid(),
        "acceleratorIds": {k: list(v) for k, v in ctx.get_accelerator_ids().items() if v},
    }


class GroupMember:
    """Base class of a worker of a leader-worker group (rank >= 1)."""

    def __init__(self, *, rank: int, world_size: int) -> None:
        self.rank = rank
        self.world_size = world_size

    async def rf_info(self) -> dict[str, Any]:
        """Where this member runs (node id, host label, pool, accelerators)."""
        return _member_info(self.rank, self.world_size)

    async def rf_watch(self) -> None:
        """Never returns while the member lives: the leader's death detector."""
        await asyncio.Event().wait()


class LeaderWorkerGroup:
    """Mixin for a Serve deployment class whose replica is the leader of a multi-host group.

    Call :meth:`start_group` in ``__init__``; use :attr:`members` (actor handles, rank 1..n-1) to
    answer requests. ``check_health`` and ``__del__`` are provided; a subclass that overrides them
    must call these.
    """

    #: Seconds the members may take to start (placement is already reserved, so this is process start).
    group_ready_timeout_s: float = 120.0
    #: Kill the replica as soon as a member dies (else: only fail health checks).
    group_fail_fast: bool = True
    #: Seconds a health check waits for every member to answer.
    group_health_timeout_s: float = 10.0
    #: Seconds a member may stay unreachable (not known dead) before the group counts as broken.
    group_unavailable_grace_s: float = 3.0
    #: Seconds between looks at which hosts Ray is draining (see :mod:`rayfleet.serve.group_drain`).
    group_drain_poll_s: float = 1.0
    #: How long before a worker's draining host goes the group retires at the latest (Serve then
    #: needs a few health-check periods and the graceful shutdown to stop it).
    group_retire_lead_s: float = 20.0

    members: list[Any]
    group_info: list[dict[str, Any]]

    def start_group(self, worker_cls: type, *args: Any, **kwargs: Any) -> list[Any]:
        """Start one ``worker_cls`` actor in each bundle 1..n-1 of this replica's placement group.

        Blocks until every member answers. Without a placement group (a plain ``serve.run``) or with
        a one-bundle group the leader is alone and ``members`` is empty.
        """
        self._rf_lock = threading.Lock()
        self._rf_broken: str | None = None
        self._rf_stopping = False
        self._rf_retiring: str | None = None
        self.members = []
        pg = get_current_placement_group()
        size = pg.bundle_count if pg is not None else 1
        leader = _member_info(0, size)
        if size == 1:
            self.group_info = [leader]
            return self.members
        actor_cls = worker_cls if hasattr(worker_cls, "remote") else ray.remote(worker_cls)
        specs = pg.bundle_specs
        self._rf_bundles = [dict(b) for b in specs]
        for i in range(1, size):
            opts = bundle_actor_options(specs[i])
            handle = actor_cls.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=pg,
                    placement_group_bundle_index=i,
                    placement_group_capture_child_tasks=True,
                ),
                max_restarts=0,
                max_task_retries=0,
                **opts,
            ).remote(*args, rank=i, world_size=size, **kwargs)
            self.members.append(handle)
        try:
            infos = ray.get([m.rf_info.remote() for m in self.members], timeout=self.group_ready_timeout_s)
        except Exception as e:
            self._rf_kill_members()
            raise GroupStartError(f"group of {size} hosts did not start: {type(e).__name__}: {e}") from e
        self.group_info = [leader, *infos]
        slices = {m["slice"] for m in self.group_info}
        if len(slices) > 1:
            self._rf_kill_members()
            raise GroupStartError(f"group members landed on different TPU slices {sorted(map(str, slices))}; retrying")
        watches = [m.rf_watch.remote() for m in self.members]
        threading.Thread(target=self._rf_watch_members, args=(watches,), name="rayfleet-group-watch", daemon=True).start()
        logger.info(
            "leader-worker group whole: %s",
            ", ".join(f"rank {m['rank']} on {m['host'] or m['nodeId'][:8]}" for m in self.group_info),
        )
        return self.members

    # ---------------------------------------------------------------- failure

    @property
    def group_broken(self) -> str | None:
        """Why the group is broken, or None while it is whole."""
        return getattr(self, "_rf_broken", None)

    def _rf_watch_members(self, watches: list[Any]) -> None:
        watches = list(watches)
        while True:
            ready, _ = ray.wait(watches, num_returns=1, timeout=self.group_drain_poll_s)
            if self._rf_stopping:
                return
            if not ready:
                self._rf_check_drain()
                continue
            index = watches.index(ready[0])
            try:
                ray.get(ready[0])
                reason = f"group member rank {index + 1} exited"
            except ray.exceptions.ActorUnavailableError:
                # Unreachable, not known dead: a lost host, or a passing network fault. Members never
                # restart, so one that stays unreachable for the grace period is treated as lost.
                if self._rf_reachable(self.members[index]):
                    watches[index] = self.members[index].rf_watch.remote()
                    continue
                reason = f"group member rank {index + 1} unreachable for {self.group_unavailable_grace_s:g}s"
            except Exception as e:
                reason = f"group member rank {index + 1} died ({type(e).__name__})"
            self.group_failed(reason)
            return

    def _rf_reachable(self, member: Any) -> bool:
        deadline = time.monotonic() + self.group_unavailable_grace_s
        while time.monotonic() < deadline and not self._rf_stopping:
            try:
                ray.get(member.rf_info.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return True
            except ray.exceptions.ActorUnavailableError:
                time.sleep(0.5)
            except Exception:
                return False
        return False

    # ---------------------------------------------------------------- draining hosts

    @property
    def group_retiring(self) -> str | None:
        """Why the group is retiring (a worker's host drains), or None."""
        return getattr(self, "_rf_retiring", None)

    def _rf_check_drain(self) -> None:
        if self._rf_retiring is not None or self._rf_broken is not None:
            return
        try:
            draining = draining_deadlines(ray._private.state.state.get_draining_nodes())
        except Exception as e:  # the GCS is busy or restarting: look again next poll
            logger.debug("could not read Ray's draining nodes: %s", e)
            return
        if not draining:
            return
        members = [Member(m["rank"], m["nodeId"], m["host"]) for m in self.group_info]
        reason = retire_reason(time.time(), members, draining, room_elsewhere=lambda: self._rf_room(draining),
                               lead_s=self.group_retire_lead_s)
        if reason is not None:
            self._rf_retiring = reason
            logger.warning("leader-worker group retiring: %s; it answers requests until Serve replaces it", reason)

    def _rf_room(self, draining: dict[str, float]) -> bool:
        """Whether a whole new group fits now on hosts of this pool that are not draining (a TPU
        group: on one other whole slice)."""
        leader = self.group_info[0]
        if not leader.get("pool"):
            return False
        try:
            free = ray._private.state.available_resources_per_node()
            nodes = [NodeRoom(n["NodeID"], _flat(n.get("Labels")), free.get(n["NodeID"], {}))
                     for n in ray.nodes() if n.get("Alive")]
        except Exception as e:
            logger.debug("could not read the cluster's free resources: %s", e)
            return False
        return room_for_group(self._rf_bundles, nodes, {LABEL_POOL: leader["pool"]}, draining,
                              together_by=LABEL_TPU_SLICE if leader.get("slice") else None)

    def group_failed(self, reason: str) -> None:
        """Mark the group broken: fail health checks and requests, and (fail-fast) end this replica."""
        with self._rf_lock:
            if self._rf_broken is not None or self._rf_stopping:
                return
            self._rf_broken = reason
        logger.error("leader-worker group broken: %s; replacing the whole group", reason)
        self._rf_kill_members()
        if self.group_fail_fast:
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def raise_if_broken(self) -> None:
        """Call at the start of a request: a broken group answers nothing."""
        if self.group_broken is not None:
            raise GroupBrokenError(self.group_broken)

    def _rf_kill_members(self) -> None:
        for m in getattr(self, "members", []):
            try:
                ray.kill(m, no_restart=True)
            except Exception:  # already dead
                pass

    # ---------------------------------------------------------------- Serve hooks

    async def check_health(self) -> None:
        """Serve's health check: fails while the group is broken or retiring (a worker's host
        drains), or a member does not answer."""
        self.raise_if_broken()
        if self.group_retiring is not None:
            raise GroupRetiringError(self.group_retiring)
        members = getattr(self, "members", [])
        if members:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*[m.rf_info.remote() for m in members]), timeout=self.group_health_timeout_s
                )
            except ray.exceptions.ActorDiedError as e:
                self.group_failed(f"a group member died ({type(e).__name__})")
                raise GroupBrokenError(self.group_broken or "group member died") from e
            except Exception as e:
                # Slow or unreachable: Serve replaces the replica after consecutive failures.
                raise GroupBrokenError(f"a group member did not answer its health check ({type(e).__name__})") from e

    def __del__(self) -> None:
        """Serve calls this after draining the replica: stop the members with it."""
        self._rf_stopping = True
        self._rf_kill_members()
