"""Several clusters behind one backend: the config's Cluster documents, each a member backend
(simulated, local Ray, KubeRay), with one quota over all of them (queues and cohorts span
clusters, as in MultiKueue) and placement that picks a cluster per run.

- **Placement**: a run goes to a member that runs its pool, is not cordoned and answers, preferring
  the one with the most free hosts of the pool now (the config's order breaks ties). Which member
  holds a run is remembered, and learnt from each member's list of runs after a restart.
- **Cordon** (:meth:`ClusterSet.set_cordons`, from the store: the API's and the controller's own):
  a cordoned member gets no new run or service; its pools' capacity is left out of what the
  controller sees. **Drain**: every run on the member reports a ``cluster-drain`` notice, so the
  controller asks it to checkpoint and moves it, as it does for a spot reclaim (a disruption, not
  a failure); services come up on another member, take the traffic once their replicas run, and
  only then go from the drained one.
- **Reachability**: :meth:`ClusterSet.probe` asks each member for its capacity once a controller
  pass; the times a member stopped and started answering are what the controller's auto-cordon
  rule reads (:mod:`rayfleet.capacity.clusters`). A member that does not answer keeps its runs'
  last known status (its runs are neither lost nor launched elsewhere: they may still be running).

Host names are ``<cluster>/<host>`` (two clusters may run pools of the same name).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..api import PoolSpec, Service
from ..errors import BackendError, NotFound
from .base import (
    Backend,
    CapacityBackend,
    ClusterInfo,
    GroupMigrationBackend,
    HostInfo,
    LaunchRequest,
    Notice,
    NoticeKind,
    PoolCapacity,
    ReleasingBackend,
    RunStatus,
    ServiceRunStatus,
    ServingBackend,
    TimedBackend,
    WatchingBackend,
)

log = logging.getLogger("rayfleet.clusters")

SEP = "/"


@dataclass(frozen=True)
class Cordon:
    """A member that takes no new work; ``drain``: its runs and services are moved off it."""

    drain: bool = False
    reason: str = ""
    since: float = 0.0
    deadline: float | None = None   # drained: when its runs move at the latest


@dataclass(frozen=True)
class MemberState:
    name: str
    pools: tuple[str, ...]
    cordon: Cordon | None
    reachable: bool
    failing_since: float | None     # when it stopped answering (None: it answers)
    answering_since: float | None   # when it last started answering (None: it does not)
    error: str = ""


class ClusterSet:
    """``members``: cluster name -> its backend; ``pools``: cluster name -> the pools it runs."""

    name = "clusters"

    def __init__(self, members: dict[str, Backend], pools: dict[str, tuple[str, ...]], *, clock: Callable[[], float]):
        if not members:
            raise ValueError("a cluster set needs at least one member")
        self.members = members
        self.pools = pools
        self.clock = clock
        self.cordons: dict[str, Cordon] = {}
        self._where: dict[str, str] = {}                  # run id -> member
        self._last: dict[str, RunStatus] = {}             # run id -> its last status (a member that stops answering)
        self._svc_where: dict[str, str] = {}              # service -> the member serving it
        self._svc_moving: dict[str, str] = {}             # service -> the member it is moving to
        self._svc_args: dict[str, tuple[Service, str, PoolSpec, int]] = {}
        self._failing: dict[str, tuple[float, str]] = {}  # member -> (since, error)
        self._stops: dict[str, tuple[str, str]] = {}      # run id -> (member, reason): stops a silent member is owed
        self._launched: dict[tuple[str, str], int] = {}   # (member, pool) -> runs launched there (placement's tie-break)
        self._answering: dict[str, float] = {n: clock() for n in members}
        self._unlisted: set[str] = set(members)           # members whose runs _holder has not learnt yet

    # ------------------------------------------------------------ members

    def _member(self, name: str) -> Backend:
        return self.members[name]

    def _usable(self, name: str) -> bool:
        return name not in self.cordons and name not in self._failing

    def _candidates(self, pool: str) -> list[str]:
        return [n for n in self.members if pool in self.pools[n] and self._usable(n)]

    def _pick(self, pool: str, hosts: int) -> str:
        candidates = self._candidates(pool)
        if not candidates:
            having = [n for n in self.members if pool in self.pools[n]]
            why = ", ".join(f"{n} ({'cordoned' if n in self.cordons else 'not answering'})" for n in having) or "none runs it"
            raise BackendError(f"no cluster can take a run on pool {pool} now: {why}")

        def free(n: str) -> int:
            try:
                cap = self._member(n).capacity().get(pool)
            except BackendError as e:
                self._failed(n, e)
                return -1
            return cap.free_hosts if cap is not None else 0

        scored = [(free(n), -self._launched.get((n, pool), 0), -i, n) for i, n in enumerate(candidates)]
        best = max(scored)
        fits = [s for s in scored if s[0] >= hosts]
        return (max(fits) if fits else best)[3]

    def _failed(self, name: str, e: Exception) -> None:
        if name not in self._failing:
            log.warning("cluster %s does not answer: %s", name, e)
            self._failing[name] = (self.clock(), str(e))
            self._answering.pop(name, None)

    def _answered(self, name: str) -> None:
        if name in self._failing:
            log.warning("cluster %s answers again", name)
            del self._failing[name]
        self._answering.setdefault(name, self.clock())

    def cluster_of(self, run_id: str) -> str | None:
        """The name of the member cluster that holds ``run_id`` (None: none does)."""
        return self._holder(run_id)

    def _holder(self, run_id: str) -> str | None:
        """The member that holds ``run_id``. Runs this set did not launch (it was started after a
        restart, or a take-over) are learnt from each member's list of runs, once per member."""
        name = self._where.get(run_id)
        if name is None and self._unlisted:
            self._list_members()
            name = self._where.get(run_id)
        return name

    def _list_members(self) -> None:
        for n in sorted(self._unlisted - set(self._failing)):
            try:
                runs = self._member(n).list_runs()
            except BackendError as e:
                self._failed(n, e)
                continue
            for r in runs:
                self._where.setdefault(r, n)
            self._unlisted.discard(n)

    @staticmethod
    def _prefixed(name: str, rs: RunStatus) -> RunStatus:
        return replace(rs, hosts=tuple(f"{name}{SEP}{h}" for h in rs.hosts),
                       notices=tuple(replace(n, host=f"{name}{SEP}{n.host}" if n.host else name) for n in rs.notices))

    # ------------------------------------------------------------ the Backend protocol

    def up(self) -> ClusterInfo:
        infos = [m.up() for m in self.members.values()]
        first = infos[0]
        return ClusterInfo(name=",".join(self.members), backend=self.name, address=first.address,
                           dashboard_url=first.dashboard_url, serve_url=first.serve_url)

    def down(self) -> None:
        for m in self.members.values():
            m.down()

    def info(self) -> ClusterInfo | None:
        first = next(iter(self.members.values())).info()
        return None if first is None else ClusterInfo(name=",".join(self.members), backend=self.name, address=first.address,
                                                      dashboard_url=first.dashboard_url, serve_url=first.serve_url)

    def capacity(self) -> dict[str, PoolCapacity]:
        """Each pool's capacity over the members that may take work now (cordoned or silent ones left out)."""
        out: dict[str, PoolCapacity] = {}
        for n, member in self.members.items():
            if not self._usable(n):
                continue
            try:
                caps = member.capacity()
            except BackendError as e:
                self._failed(n, e)
                continue
            for pool, c in caps.items():
                have = out.get(pool)
                out[pool] = c if have is None else PoolCapacity(
                    pool, have.hosts + c.hosts, have.ready_hosts + c.ready_hosts, have.free_hosts + c.free_hosts,
                    have.provisioning_hosts + c.provisioning_hosts, have.cordoned_hosts + c.cordoned_hosts)
        for n in self.members:   # a pool whose every member is out has no capacity, not an unknown one
            for pool in self.pools[n]:
                out.setdefault(pool, PoolCapacity(pool, 0, 0, 0))
        return out

    def launch(self, req: LaunchRequest) -> str:
        holder = self._holder(req.run_id)   # launched before (a crash between the launch and its record): the same member
        name = holder or self._pick(req.pool, _hosts_of(req))
        run_id = self._member(name).launch(req)
        self._where[req.run_id] = name
        if holder is None:
            self._launched[(name, req.pool)] = self._launched.get((name, req.pool), 0) + 1
        return run_id

    def stop(self, run_id: str, *, reason: str = "stopped") -> None:
        """Stop a run; on a member that does not answer, the stop is kept and sent once it does."""
        name = self._holder(run_id)
        if name is None:
            return
        if name in self._failing:
            self._stops[run_id] = (name, reason)
            return
        try:
            self._member(name).stop(run_id, reason=reason)
        except BackendError as e:
            self._failed(name, e)
            self._stops[run_id] = (name, reason)

    def release_run(self, run_id: str) -> None:
        """An ended run: its member drops what it keeps for it (when it keeps anything), and this
        set forgets where it was. Kept for later on a member that does not answer (as a stop)."""
        name = self._holder(run_id)
        if name is None:
            return
        member = self._member(name)
        if isinstance(member, ReleasingBackend):
            if name in self._failing:
                return   # (the sweep of the next take-over releases it; its holder stays known)
            member.release_run(run_id)
        self._where.pop(run_id, None)

    def run_status(self, run_id: str) -> RunStatus | None:
        name = self._holder(run_id)
        if name is None:
            return None
        if name in self._failing:
            return self._silent(name, run_id)
        try:
            rs = self._member(name).run_status(run_id)
        except BackendError as e:
            self._failed(name, e)
            return self._silent(name, run_id)
        if rs is None:
            return None
        rs = self._prefixed(name, rs)
        cordon = self.cordons.get(name)
        if cordon is not None and cordon.drain:
            rs = self._drained(name, rs, cordon)
        self._last[run_id] = rs
        return rs

    def _silent(self, name: str, run_id: str) -> RunStatus | None:
        """A run on a member that does not answer: as it was last seen (and, drained, with the drain's notice)."""
        last = self._last.get(run_id)
        cordon = self.cordons.get(name)
        return self._drained(name, last, cordon) if last is not None and cordon is not None and cordon.drain else last

    @staticmethod
    def _drained(name: str, rs: RunStatus, cordon: Cordon) -> RunStatus:
        notice = Notice(NoticeKind.DRAIN, name, cordon.deadline, f"cluster {name} is drained: {cordon.reason}".rstrip(": "))
        return replace(rs, notices=(*rs.notices, notice))

    def logs(self, run_id: str) -> str:
        name = self._holder(run_id)
        if name is None:
            raise NotFound(f"no cluster knows run {run_id}")
        return self._member(name).logs(run_id)

    def list_runs(self) -> list[str]:
        self._list_members()
        return list(self._where)

    def upload_package(self, uri: str, data: bytes) -> None:
        for m in self.members.values():   # a run may go to any of them
            m.upload_package(uri, data)

    # ------------------------------------------------------------ capacity that comes and goes

    def hosts(self) -> list[HostInfo]:
        out: list[HostInfo] = []
        for n, m in self.members.items():
            if isinstance(m, CapacityBackend) and n not in self._failing:
                try:
                    out.extend(replace(h, name=f"{n}{SEP}{h.name}") for h in m.hosts())
                except BackendError as e:
                    self._failed(n, e)
        return out

    def _host(self, host: str) -> tuple[CapacityBackend, str]:
        name, _, local = host.partition(SEP)
        member = self.members.get(name)
        if not isinstance(member, CapacityBackend):
            raise NotFound(f"no host {host!r} in any cluster", field="host")
        return member, local

    def request_checkpoint(self, run_id: str) -> None:
        name = self._holder(run_id)
        member = self.members.get(name or "")
        if isinstance(member, CapacityBackend) and name not in self._failing:
            try:
                member.request_checkpoint(run_id)
            except BackendError as e:   # (the move then waits for the notice's deadline)
                self._failed(name or "", e)

    def cordon(self, host: str, reason: str) -> None:
        member, local = self._host(host)
        member.cordon(local, reason)

    def uncordon(self, host: str) -> None:
        member, local = self._host(host)
        member.uncordon(local)

    def next_event_at(self) -> float | None:
        due = [t for m in self.members.values() if isinstance(m, TimedBackend) and (t := m.next_event_at()) is not None]
        return min(due) if due else None

    def start_watching(self, on_change: Callable[[], None] | None = None) -> None:
        for m in self.members.values():
            if isinstance(m, WatchingBackend):
                m.start_watching(on_change)

    def stop_watching(self) -> None:
        for m in self.members.values():
            if isinstance(m, WatchingBackend):
                m.stop_watching()

    # ------------------------------------------------------------ cordons and reachability

    def set_cordons(self, cordons: dict[str, Cordon]) -> None:
        unknown = set(cordons) - set(self.members)
        if unknown:
            raise NotFound(f"no cluster {sorted(unknown)[0]!r} (clusters: {', '.join(self.members)})", field="name")
        self.cordons = dict(cordons)

    def probe(self) -> list[MemberState]:
        """Ask every member whether it answers (once a controller pass); each member's state."""
        for n, m in self.members.items():
            try:
                m.capacity()
            except BackendError as e:
                self._failed(n, e)
            else:
                self._answered(n)
                self._send_stops(n)
        return self.states()

    def _send_stops(self, name: str) -> None:
        for run_id, (member, reason) in list(self._stops.items()):
            if member == name:
                try:
                    self._member(name).stop(run_id, reason=reason)
                except BackendError as e:
                    self._failed(name, e)
                    return
                del self._stops[run_id]

    def states(self) -> list[MemberState]:
        return [MemberState(n, tuple(self.pools[n]), self.cordons.get(n), n not in self._failing,
                            self._failing[n][0] if n in self._failing else None, self._answering.get(n),
                            self._failing[n][1] if n in self._failing else "") for n in self.members]

    # ------------------------------------------------------------ services

    def _serving(self, name: str) -> ServingBackend:
        member = self._member(name)
        if not isinstance(member, ServingBackend):
            raise BackendError(f"cluster {name} does not serve")
        return member

    def _service_holder(self, name: str) -> str | None:
        holder = self._svc_where.get(name)
        if holder is None:
            for n, m in self.members.items():
                if isinstance(m, ServingBackend) and n not in self._failing and m.service_status(name) is not None:
                    self._svc_where[name] = holder = n
                    break
        return holder

    def deploy_service(self, svc: Service, pool: str, pool_spec: PoolSpec, replicas: int) -> None:
        self._svc_args[svc.name] = (svc, pool, pool_spec, replicas)
        holder = self._service_holder(svc.name)
        if holder is None or pool not in self.pools[holder]:
            holder = self._pick(pool, 0)
            self._svc_where[svc.name] = holder
        self._serving(holder).deploy_service(svc, pool, pool_spec, replicas)
        moving = self._svc_moving.get(svc.name)
        if moving is not None:
            self._serving(moving).deploy_service(svc, pool, pool_spec, replicas)

    def service_status(self, name: str) -> ServiceRunStatus | None:
        holder = self._service_holder(name)
        if holder is None:
            return None
        self._move_service(name, holder)
        holder = self._svc_where[name]
        try:
            return self._serving(holder).service_status(name)
        except BackendError as e:
            self._failed(holder, e)
            return None

    def _move_service(self, name: str, holder: str) -> None:
        """A service on a drained member: up on another one first; once its replicas there run as
        many as on the old one, traffic is theirs and the old deployment goes."""
        cordon = self.cordons.get(holder)
        args = self._svc_args.get(name)
        if cordon is None or not cordon.drain or args is None:
            self._svc_moving.pop(name, None)
            return
        svc, pool, pool_spec, replicas = args
        target = self._svc_moving.get(name)
        if target is None:
            candidates = self._candidates(pool)
            if not candidates:
                return   # nowhere to go: it stays, cordoned
            target = self._pick(pool, 0)
            self._svc_moving[name] = target
            self._serving(target).deploy_service(svc, pool, pool_spec, replicas)
            log.warning("service %s: moving from drained cluster %s to %s", name, holder, target)
        new = self._serving(target).service_status(name)
        old = self._serving(holder).service_status(name)
        if new is not None and new.replicas_running >= max(1, old.replicas_running if old is not None else 0):
            self._svc_where[name] = target
            del self._svc_moving[name]
            self._serving(holder).delete_service(name)
            log.warning("service %s: serving from %s; its deployment on %s removed", name, target, holder)

    def delete_service(self, name: str) -> None:
        for n in {self._svc_where.pop(name, None), self._svc_moving.pop(name, None)} - {None}:
            self._serving(n).delete_service(name)   # type: ignore[arg-type]
        self._svc_args.pop(name, None)

    def migrate_groups(self, name: str, away_from: set[str], *, pool: str | None = None, pool_spec: PoolSpec | None = None) -> list[int]:
        holder = self._service_holder(name)
        member = self.members.get(holder or "")
        if not isinstance(member, GroupMigrationBackend):
            return []
        local = {h.partition(SEP)[2] for h in away_from if h.startswith(f"{holder}{SEP}")}
        return member.migrate_groups(name, local, pool=pool, pool_spec=pool_spec) if local else []


def _hosts_of(req: LaunchRequest) -> int:
    """Hosts a gang needs (a multi-host TPU slice's hosts, else one per worker at most)."""
    spec = req.pool_spec
    return max(1, spec.slice_hosts if spec.is_tpu and spec.slice_hosts > 1 else req.workers)
