"""The simulated backend's ServingBackend half: Serve services as replica groups on the sim's hosts.

A service's ``replicas`` leader-worker groups are gangs of ``hostsPerReplica`` hosts each
(``STRICT_SPREAD`` when more than one, as ``serve/placement.py`` plans them), placed on the pool's
hosts like training gangs, so services and training compete for hosts. A group is ready
``readyAfter`` seconds after it is placed; what load asks for follows the scripted steps.

Requests: from the moment a service's first group is routed, clients send ``requestRate`` requests
per second, spread evenly over the routed groups, each taking ``requestLatency`` seconds. A group
that goes without a drain (its host lost, a reclaim or window deadline passed) fails the requests
it has in flight; while no group is routed every arriving request fails. A group that is drained
(scaled down, or replaced by a migration) gets no new requests and keeps its hosts until those in
flight are done. ``ServiceRunStatus.failed_requests`` is the count (the expected number, rounded up).

Migrations (:meth:`ServingSim.migrate_groups`): a replacement group is brought up next to each
group with a host in ``away_from``; when it is ready it takes the group's place in routing and the
old group drains, so a move finished before the old hosts go fails nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...api import PoolSpec, Service
from ..base import GroupRunStatus, Notice, NoticeKind, ServiceRunStatus
from ..placement import plan_gang
from .hosts import CORDONED
from .records import Gang, SimGroup, SimService
from .scenario import ServiceScript

if TYPE_CHECKING:
    from .backend import SimBackend


def _service_of(key: str) -> str:
    return key[4:].rpartition(":")[0]


class ServingSim:
    """Mixed into :class:`~rayfleet.backends.sim.backend.SimBackend`."""

    def script_service(self: SimBackend, name: str, *, ready_after: float = 0.0, load: list[tuple[float, int]] | None = None,
                       request_rate: float = 0.0, request_latency: float = 0.1) -> None:
        """A service's groups become ready ``ready_after`` seconds after being placed; ``load``:
        (clock time, replicas wanted) steps; ``request_rate`` requests/s of ``request_latency`` s each."""
        self._svc_scripts[name] = ServiceScript(ready_after=ready_after, request_rate=request_rate, request_latency=request_latency)
        for at, replicas in load or []:
            self.set_load(name, replicas, at=at)

    def set_load(self: SimBackend, name: str, replicas: int, *, at: float | None = None) -> None:
        """From ``at`` (default: now) Serve's autoscaler asks for ``replicas`` replicas of service ``name``."""
        self._push(self._now() if at is None else at, "load", name, replicas)

    def _on_load(self: SimBackend, t: float, name: str, replicas: int) -> None:
        self._load[name] = replicas
        svc = self.services.get(name)
        if svc is not None:
            svc.wanted = min(max(replicas, svc.min_replicas), svc.max_replicas)

    # ------------------------------------------------------------ requests

    @staticmethod
    def _routed(svc: SimService) -> int:
        return sum(1 for g in svc.groups if g.ready_at is not None)

    @staticmethod
    def _routing_changed(svc: SimService, t: float) -> None:
        """Call after any change of the routed groups: opens or closes an outage (no group routed)."""
        routed = sum(1 for g in svc.groups if g.ready_at is not None)
        if routed and svc.live_since is None:
            svc.live_since = t
        if svc.live_since is None:
            return
        if not routed and svc.unrouted_since is None:
            svc.unrouted_since = t
        elif routed and svc.unrouted_since is not None:
            svc.failed += svc.script.request_rate * (t - svc.unrouted_since)
            svc.unrouted_since = None

    @staticmethod
    def _failed_now(svc: SimService, t: float) -> int:
        failed = svc.failed + (svc.script.request_rate * (t - svc.unrouted_since) if svc.unrouted_since is not None else 0.0)
        return math.ceil(failed - 1e-9)

    def _svc_drain(self: SimBackend, svc: SimService, g: SimGroup, t: float, share: float) -> None:
        """``g`` (no longer routed) finishes its requests in flight, then frees its hosts."""
        if g.replacement is not None:
            self._release(g.replacement.gang)
            g.replacement = None
        latency = svc.script.request_latency
        if share <= 0 or latency <= 0 or not g.gang.hosts:
            self._release(g.gang)
            return
        g.drain_share, g.drain_until = share, t + latency
        svc.draining.append(g)
        self._push(g.drain_until, "svc_drained", g.gang.key)

    def _on_svc_drained(self: SimBackend, t: float, key: str) -> None:
        svc = self.services.get(_service_of(key))
        for g in list(svc.draining) if svc else []:
            if g.gang.key == key:
                svc.draining.remove(g)
                self._release(g.gang)

    # ------------------------------------------------------------ hooks of the backend

    def _svc_placed(self: SimBackend, gang: Gang, t: float) -> None:
        svc = self.services.get(_service_of(gang.key))
        if svc is not None:
            self._push(t + svc.script.ready_after, "svc_ready", gang.key)

    def _on_svc_ready(self: SimBackend, t: float, key: str) -> None:
        svc = self.services.get(_service_of(key))
        if svc is None:
            return
        for i, g in enumerate(svc.groups):
            if g.gang.key == key and g.gang.placed_at is not None and g.ready_at is None:
                g.ready_at = t
            elif g.replacement is not None and g.replacement.gang.key == key and g.replacement.gang.placed_at is not None:
                # cut over: the replacement is routed, the old group stops taking requests and drains
                new, routed = g.replacement, self._routed(svc)
                new.ready_at, g.replacement = t, None
                svc.groups[i] = new
                svc.migrations += 1
                if g.ready_at is not None:
                    self._svc_drain(svc, g, t, svc.script.request_rate / routed)
                else:
                    self._release(g.gang)
            else:
                continue
            self._routing_changed(svc, t)
            return

    def _svc_gang_lost(self: SimBackend, key: str, t: float, message: str) -> None:
        """A host of a group went without a drain: the requests in flight on it fail; Serve restarts
        the replica elsewhere (a replacement being brought up takes its place instead)."""
        svc = self.services.get(_service_of(key))
        if svc is None:
            return
        for g in list(svc.draining):
            if g.gang.key == key:   # drained too late: what it still had in flight fails
                svc.draining.remove(g)
                svc.failed += g.drain_share * max(0.0, (g.drain_until or t) - t)
                self._release(g.gang)
                return
        for i, g in enumerate(svc.groups):
            if g.replacement is not None and g.replacement.gang.key == key:   # the replacement is placed again
                self._release(g.replacement.gang)
                g.replacement.gang.placed_at = None
                self._queue(g.replacement.gang.plan.pool, g.replacement.gang)
                return
            if g.gang.key != key:
                continue
            if g.ready_at is not None:
                svc.failed += svc.script.request_rate / self._routed(svc) * svc.script.request_latency
            self._release(g.gang)
            if g.replacement is not None:
                svc.groups[i] = g.replacement
            else:
                g.gang.placed_at, g.ready_at = None, None
                self._queue(g.gang.plan.pool, g.gang)
            self._routing_changed(svc, t)
            return

    # ------------------------------------------------------------ groups

    def _new_group(self: SimBackend, svc: SimService, index: int, pool: str, spec: PoolSpec) -> SimGroup:
        svc.seq += 1
        plan = plan_gang(run_id=f"svc:{svc.name}:{index}.{svc.seq}", pool=pool, spec=spec, workers=svc.hosts_per_replica,
                         resources_per_worker=svc.resources, strategy="STRICT_SPREAD" if svc.hosts_per_replica > 1 else "PACK",
                         host_cpus=spec.cpu_per_host / 1000)
        g = SimGroup(Gang(plan.run_id, plan))
        if pool in self.pools:
            self._queue(pool, g.gang)
        return g

    def _host_notices(self: SimBackend, host: str) -> list[Notice]:
        """The notices out on ``host`` (reclaim, recycle, window end), and UNHEALTHY while it is cordoned."""
        h = self._host(host)
        out = [h.notice] if h.notice is not None else []
        if h.state == CORDONED:
            out.append(Notice(NoticeKind.UNHEALTHY, host, None, h.cordon_reason))
        return out

    # ------------------------------------------------------------ ServingBackend protocol

    def deploy_service(self: SimBackend, svc: Service, pool: str, pool_spec: PoolSpec, replicas: int) -> None:
        self._answer()
        with self._lock:
            now = self._advance()
            cur = self.services.get(svc.name)
            if cur is None:
                script = self._svc_scripts.get(svc.name)
                if script is None:
                    script = (self.scenario.service_script(svc.name) if self.scenario else None) or self._default_svc
                    for step in sorted(script.load, key=lambda s: s.at):   # a scenario's load steps count from the sim's start
                        at = (self._up_at or now) + step.at
                        if at <= now:
                            self._load[svc.name] = step.replicas
                        else:
                            self.set_load(svc.name, step.replicas, at=at)
                auto, rg = svc.spec.autoscaling, svc.spec.replica_group
                wanted = self._load.get(svc.name, auto.min_replicas)
                cur = SimService(svc.name, pool, self.pools[pool].spec if pool in self.pools else pool_spec, replicas, auto.min_replicas,
                                 auto.max_replicas, rg.hosts_per_replica, dict(rg.resources_per_host), svc.spec.route_prefix, script,
                                 min(max(wanted, auto.min_replicas), auto.max_replicas))
                self.services[svc.name] = cur
            cur.target = replicas
            cur.pool, cur.spec = pool, self.pools[pool].spec if pool in self.pools else pool_spec
            while len(cur.groups) > replicas:       # scale down: the highest groups drain
                routed = self._routed(cur)
                g = cur.groups.pop()
                self._svc_drain(cur, g, now, cur.script.request_rate / routed if g.ready_at is not None else 0.0)
            while len(cur.groups) < replicas:
                cur.groups.append(self._new_group(cur, len(cur.groups), pool, cur.spec))
            self._routing_changed(cur, now)
            self._place_dirty(now)

    def migrate_groups(self: SimBackend, name: str, away_from: set[str], *, pool: str | None = None,
                       pool_spec: PoolSpec | None = None) -> list[int]:
        """See :meth:`rayfleet.backends.base.GroupMigrationBackend.migrate_groups`."""
        with self._lock:
            now = self._advance()
            svc = self.services.get(name)
            if svc is None:
                return []
            moving = []
            for i, g in enumerate(svc.groups):
                if not {h.name for h in g.gang.hosts} & away_from:
                    continue
                to = pool or g.gang.plan.pool
                if g.replacement is not None and g.replacement.gang.plan.pool != to:
                    self._release(g.replacement.gang)   # asked to move elsewhere: the earlier replacement goes
                    g.replacement = None
                if g.replacement is None:
                    spec = self.pools[to].spec if to in self.pools else pool_spec
                    if spec is None:
                        continue
                    g.replacement = self._new_group(svc, i, to, spec)
                moving.append(i)
            self._place_dirty(now)
            return moving

    def service_status(self: SimBackend, name: str) -> ServiceRunStatus | None:
        self._answer()
        with self._lock:
            now = self._advance()
            svc = self.services.get(name)
            if svc is None:
                return None
            running = self._routed(svc)
            placing = sum(1 for g in svc.groups if g.gang.placed_at is None)
            starting = len(svc.groups) - running - placing
            moving = [g for g in svc.groups if g.replacement is not None]
            why = []
            if placing:
                why.append(f"{placing} replica group(s) waiting for hosts on pool {svc.pool}")
            if starting:
                why.append(f"{starting} replica group(s) starting")
            if moving:
                up = sum(1 for g in moving if g.replacement and g.replacement.gang.placed_at is not None)
                why.append(f"moving {len(moving)} replica group(s): {up} replacement(s) placed, traffic moves when ready")
            if svc.draining:
                why.append(f"draining {len(svc.draining)} replica group(s)")
            if svc.wanted > svc.target:
                why.append(f"load asks for {svc.wanted} replicas, {svc.target} allowed")
            groups = tuple(GroupRunStatus(
                index=i, pool=g.gang.plan.pool, hosts=tuple(h.name for h in g.gang.hosts), ready=g.ready_at is not None,
                moving_to=g.replacement.gang.plan.pool if g.replacement else None,
                replacement_hosts=tuple(h.name for h in g.replacement.gang.hosts) if g.replacement else ()) for i, g in enumerate(svc.groups))
            hosts = sorted({h for g in groups for h in g.hosts})
            notices = tuple(n for h in hosts for n in self._host_notices(h))
            return ServiceRunStatus(name=name, replicas_target=svc.target, replicas_running=running, replicas_wanted=svc.wanted,
                                    url=f"http://sim.{self.cluster_name}{svc.route.rstrip('/')}", healthy=True, message="; ".join(why),
                                    groups=groups, notices=notices, failed_requests=self._failed_now(svc, now))

    def failed_requests(self: SimBackend, name: str) -> int | None:
        """``service_status(name).failed_requests`` without building the whole status (None: no
        such service)."""
        with self._lock:
            now = self._advance()
            svc = self.services.get(name)
            return None if svc is None else self._failed_now(svc, now)

    def delete_service(self: SimBackend, name: str) -> None:
        with self._lock:
            now = self._advance()
            svc = self.services.pop(name, None)
            for g in (svc.groups + svc.draining) if svc else []:
                self._release(g.gang)
                if g.replacement is not None:
                    self._release(g.replacement.gang)
            self._place_dirty(now)
