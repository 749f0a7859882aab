"""The simulated backend's ServingBackend half: Serve services as replica groups on the sim's hosts.

A service's ``replicas`` leader-worker groups are gangs of ``hostsPerReplica`` hosts each
(``STRICT_SPREAD`` when more than one, as ``serve/placement.py`` plans them), placed on the pool's
hosts like training gangs, so services and training compete for hosts. A group is ready
``readyAfter`` seconds after it is placed; what load asks for follows the scripted steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...api import PoolSpec, Service
from ..base import ServiceRunStatus
from ..placement import plan_gang
from .records import Gang, SimGroup, SimService
from .scenario import ServiceScript

if TYPE_CHECKING:
    from .backend import SimBackend


class ServingSim:
    """Mixed into :class:`~rayfleet.backends.sim.backend.SimBackend`."""

    def script_service(self: SimBackend, name: str, *, ready_after: float = 0.0, load: list[tuple[float, int]] | None = None) -> None:
        """A service's groups become ready ``ready_after`` seconds after being placed; ``load``:
        (clock time, replicas wanted) steps."""
        self._svc_scripts[name] = ServiceScript(ready_after=ready_after)
        for at, replicas in load or []:
            self.set_load(name, replicas, at=at)

    def set_load(self: SimBackend, name: str, replicas: int, *, at: float | None = None) -> None:
        """From ``at`` (default: now) Serve's autoscaler asks for ``replicas`` replicas of service ``name``."""
        self._push(self._now() if at is None else at, "load", name, replicas)

    def _on_svc_ready(self: SimBackend, t: float, key: str) -> None:
        name, _, _ = key.rpartition(":")
        svc = self.services.get(name[4:])
        if svc is None:
            return
        for g in svc.groups:
            if g.gang.key == key and g.gang.placed_at is not None and g.ready_at is None:
                g.ready_at = t

    def _on_load(self: SimBackend, t: float, name: str, replicas: int) -> None:
        self._load[name] = replicas
        svc = self.services.get(name)
        if svc is not None:
            svc.wanted = min(max(replicas, svc.min_replicas), svc.max_replicas)

    # ------------------------------------------------------------ ServingBackend protocol

    def deploy_service(self: SimBackend, svc: Service, pool: str, pool_spec: PoolSpec, replicas: int) -> None:
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
            while len(cur.groups) > replicas:       # scale down: the highest groups drain
                g = cur.groups.pop()
                self._release(g.gang)
            while len(cur.groups) < replicas:
                i = len(cur.groups)
                plan = plan_gang(run_id=f"svc:{svc.name}:{i}", pool=pool, spec=cur.spec, workers=cur.hosts_per_replica,
                                 resources_per_worker=cur.resources, strategy="STRICT_SPREAD" if cur.hosts_per_replica > 1 else "PACK",
                                 host_cpus=cur.spec.cpu_per_host / 1000)
                g = SimGroup(Gang(plan.run_id, plan))
                cur.groups.append(g)
                if pool in self.pools:
                    self._queue(pool, g.gang)
            self._place_dirty(now)

    def service_status(self: SimBackend, name: str) -> ServiceRunStatus | None:
        with self._lock:
            self._advance()
            svc = self.services.get(name)
            if svc is None:
                return None
            running = sum(1 for g in svc.groups if g.ready_at is not None)
            placing = sum(1 for g in svc.groups if g.gang.placed_at is None)
            starting = len(svc.groups) - running - placing
            why = []
            if placing:
                why.append(f"{placing} replica group(s) waiting for hosts on pool {svc.pool}")
            if starting:
                why.append(f"{starting} replica group(s) starting")
            if svc.wanted > svc.target:
                why.append(f"load asks for {svc.wanted} replicas, {svc.target} allowed")
            return ServiceRunStatus(name=name, replicas_target=svc.target, replicas_running=running, replicas_wanted=svc.wanted,
                                    url=f"http://sim.{self.cluster_name}{svc.route.rstrip('/')}", healthy=True, message="; ".join(why))

    def delete_service(self: SimBackend, name: str) -> None:
        with self._lock:
            now = self._advance()
            svc = self.services.pop(name, None)
            for g in svc.groups if svc else []:
                self._release(g.gang)
            self._place_dirty(now)
