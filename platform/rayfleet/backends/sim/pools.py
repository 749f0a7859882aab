"""The simulated backend's pools over time: provisioning modes, the autoscaler, host lifetimes.

Every mode of ``capacity.provisioning`` at run time, the autoscaler rule of ``capacity.scaling``:

- a pool comes up with ``minReplicas`` hosts (a reservation with all of its hosts; a calendar
  pool with none until its window opens, then all), grows when a pending gang needs hosts, and
  gives hosts idle for ``idleTimeout`` back down to ``minReplicas`` (not a reservation's or a
  calendar booking's);
- queued DWS flex-start: each pending gang's hosts are one request that arrives whole after the
  provisioning delay (a stockout at that time delays it to the window's end), or never if the gang
  stops or is placed first; non-queued DWS: a gang that needs new hosts during a stockout ends
  STOCKOUT at once;
- DWS hosts live ``maxRunDuration``: at ``recycle_at`` they drain with a RECYCLE notice and a
  replacement is asked for; at the end they go and their runs are LOST;
- calendar: at ``drain_at`` hosts drain with a WINDOW_END notice, at the window's end every host
  goes;
- spot: a reclaim drains the host with a RECLAIM notice for the pool's ``reclaimNotice``.

Mixed into :class:`~rayfleet.backends.sim.backend.SimBackend` (methods take ``self: SimBackend``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...capacity.provisioning import (
    all_or_nothing,
    drain_at,
    fails_fast_on_stockout,
    host_expires_at,
    host_lifetime,
    recycle_at,
    scales_down,
    starts_full,
    window_bounds,
)
from ...capacity.scaling import IdleHost, PoolState, gang_requests, hosts_to_release, hosts_to_request
from ..base import Notice, NoticeKind, RunState
from .hosts import ABSENT, ALIVE, CORDONED, DRAINING, PROVISIONING, READY, Host, PoolHosts
from .records import DwsRequest, Gang, shape

if TYPE_CHECKING:
    from .backend import SimBackend


class PoolsSim:
    """Provisioning, scaling and host lifetimes of the sim's pools."""

    # ------------------------------------------------------------ bring-up

    def _start_pools(self: SimBackend, t: float) -> None:
        for name, ph in self.pools.items():
            spec = ph.spec
            n = self._pool_script(name).get("initial_hosts")
            n = (spec.max_hosts if starts_full(spec) else spec.min_hosts) if n is None else min(n, spec.max_hosts)
            if ph.multi_host_tpu:
                n = -(-n // spec.slice_hosts) * spec.slice_hosts
            bounds = window_bounds(spec)
            if bounds is None:
                for h in ph.hosts[:n]:
                    self._host_up(h, t)
                continue
            start, end = bounds
            if t >= end:
                continue
            self._push(max(start, t), "window_open", name, n)
            self._push(max(drain_at(spec) or end, t), "window_drain", name)
            self._push(end, "window_close", name)

    def _host_up(self: SimBackend, h: Host, t: float) -> None:
        """A machine is up in slot ``h``: ready, with its mode's end of life scheduled."""
        ph = self.pools[h.pool]
        ph.set_state(h, READY, t)
        h.up_at, h.expires_at = t, host_expires_at(ph.spec, t)
        if host_lifetime(ph.spec) is not None and h.expires_at is not None:
            self._push(h.expires_at, "expire", h.name, h.lease)
            rc = recycle_at(ph.spec, t)
            if rc is not None:
                self._push(rc, "recycle", h.name, h.lease)
        drain = drain_at(ph.spec)
        if drain is not None and t >= drain and h.expires_at is not None:
            self._drain(h, t, Notice(NoticeKind.WINDOW_END, h.name, h.expires_at, f"the DWS calendar window of pool {h.pool} ends"))
        self._dirty.add(h.pool)

    # ------------------------------------------------------------ events

    def _on_retry(self: SimBackend, t: float, pool: str) -> None:
        self._dirty.add(pool)

    def _on_ready(self: SimBackend, t: float, host: str, generation: int) -> None:
        h = self._host(host)
        if h.state == PROVISIONING and h.generation == generation:
            self._host_up(h, t)

    def _on_lose(self: SimBackend, t: float, host: str, message: str) -> None:
        h = self._host(host)
        if h.state in (ABSENT, PROVISIONING):
            return
        for key in sorted(h.gangs):
            self._gang_lost(key, t, message)
        self._gone(h, t)

    def _gone(self: SimBackend, h: Host, t: float) -> None:
        ph = self.pools[h.pool]
        ph.set_state(h, ABSENT, t)
        h.generation += 1
        self._dirty.add(h.pool)   # a pending gang may ask for a replacement

    def _on_notice(self: SimBackend, t: float, host: str, notice: float) -> None:
        h = self._host(host)
        if h.state not in (READY, CORDONED):
            return
        self._drain(h, t, Notice(NoticeKind.RECLAIM, host, t + notice, f"spot host {host} is reclaimed ({notice:.0f}s notice)"))
        self._push(t + notice, "lose", host, f"host {host} was reclaimed (spot preemption, {notice:.0f}s notice)")

    def _on_expire(self: SimBackend, t: float, host: str, lease: int) -> None:
        h = self._host(host)
        if h.lease != lease or h.state in (ABSENT, PROVISIONING):
            return
        life = host_lifetime(self.pools[h.pool].spec) or 0.0
        self._on_lose(t, host, f"host {host} reached its DWS flex-start maximum run duration ({life:.0f}s)")

    def _on_recycle(self: SimBackend, t: float, host: str, lease: int) -> None:
        h = self._host(host)
        if h.lease != lease or h.state not in ALIVE or h.expires_at is None:
            return
        ph = self.pools[h.pool]
        sibling_recycling = h.slice is not None and any(
            o.notice is not None and o.notice.kind == NoticeKind.RECYCLE for o in ph.slices[h.slice] if o is not h)
        self._drain(h, t, Notice(NoticeKind.RECYCLE, host, h.expires_at,
                                 f"DWS host {host} reaches its maximum run duration; a replacement is provisioned"))
        if not sibling_recycling:   # one replacement per host (per slice on a multi-host TPU pool)
            self._request_hosts(h.pool, ph.spec.slice_hosts, t, None)

    def _on_window_open(self: SimBackend, t: float, pool: str, n: int) -> None:
        for h in self.pools[pool].hosts[:n]:
            if h.state == ABSENT:
                self._host_up(h, t)
        self._dirty.add(pool)

    def _on_window_drain(self: SimBackend, t: float, pool: str) -> None:
        bounds = window_bounds(self.pools[pool].spec)
        assert bounds is not None
        for h in self.pools[pool].hosts:
            if h.state in ALIVE and h.notice is None:
                self._drain(h, t, Notice(NoticeKind.WINDOW_END, h.name, bounds[1], f"the DWS calendar window of pool {pool} ends"))

    def _on_window_close(self: SimBackend, t: float, pool: str) -> None:
        for h in self.pools[pool].hosts:
            if h.state == PROVISIONING:
                self._gone(h, t)
            elif h.state != ABSENT:
                self._on_lose(t, h.name, f"the DWS calendar window of pool {pool} ended")

    def _drain(self: SimBackend, h: Host, t: float, notice: Notice) -> None:
        """A notice is out on ``h``: it takes no new bundles and goes at ``notice.deadline``."""
        if h.state == READY:
            self.pools[h.pool].set_state(h, DRAINING, t)
        h.notice = notice
        if notice.deadline is not None:
            h.expires_at = min(notice.deadline, h.expires_at) if h.expires_at is not None else notice.deadline
        for key in sorted(h.gangs):
            run = self.runs.get(key)
            if run is not None:
                run.log.append(f"[sim] t={t:.1f} {notice.kind.value} notice on host {h.name}: {notice.message}")

    def _on_idle(self: SimBackend, t: float, host: str, token: int) -> None:
        h = self._host(host)
        if h.idle_token != token or h.state != READY or not h.empty or h.idle_since is None:
            return
        ph = self.pools[h.pool]
        if self._pending[h.pool]:    # pending gangs keep the hosts they could use: the timer starts over
            h.idle_since = t
            self._push(t + ph.spec.idle_timeout, "idle", host, token)
            return
        unit = ph.slices[h.slice] if h.slice is not None else [h]
        idle = [IdleHost(o.name, o.idle_since, o.slice) for o in unit if o.state == READY and o.empty and o.idle_since is not None]
        for name in hosts_to_release(ph.spec, idle, ph.alive, t):
            self._gone(ph.by_name[name], t)

    def _after_pass(self: SimBackend, ph: PoolHosts, t: float) -> None:
        """Hosts that became empty: start their idle timers (ready) or their repair (cordoned)."""
        emptied, ph.emptied = ph.emptied, []
        for h in emptied:
            if not h.empty:
                continue
            if h.state == READY:
                h.idle_since = t
                h.idle_token += 1
                if scales_down(ph.spec):
                    self._push(t + ph.spec.idle_timeout, "idle", h.name, h.idle_token)
            elif h.state == CORDONED:
                self._start_repair(h, t)

    # ------------------------------------------------------------ placement and provisioning

    def _queue(self: SimBackend, pool: str, gang: Gang) -> None:
        self._gang_seq.setdefault(gang.key, len(self._gang_seq))
        self._pending[pool].setdefault(shape(gang.plan), {})[gang.key] = gang
        self._dirty.add(pool)

    def _place_dirty(self: SimBackend, t: float) -> None:
        while self._dirty:
            pool = min(self._dirty)
            self._dirty.discard(pool)
            self._place_pool(pool, t)

    def _place_pool(self: SimBackend, pool: str, t: float) -> None:
        ph, pending = self.pools[pool], self._pending[pool]
        spec = ph.spec
        aon = all_or_nothing(spec)
        stockout = fails_fast_on_stockout(spec) and self._stocked_out(pool, t) is not None and ph.provisioning == 0
        needs: list[int] = []
        asking: list[Gang] = []      # all-or-nothing: gangs with no request out
        # Shapes in the order of their oldest gang; within a shape, launch order.
        for key_shape, gangs in sorted(pending.items(), key=lambda kv: self._gang_seq[next(iter(kv[1]))]):
            while gangs:
                key, gang = next(iter(gangs.items()))
                hosts = ph.place(gang.plan)
                if hosts is None:
                    if stockout:
                        for k in [k for k in gangs if k in self.runs]:
                            self._finish(self.runs[k], RunState.STOCKOUT, t,
                                         f"no capacity: pool {pool} (DWS flex-start, non-queued) is stocked out")
                    elif aon:
                        new = [g for g in gangs.values() if g.key not in self._gang_request]
                        asking += new
                        needs += [ph.hosts_needed(g.plan) for g in new]
                    else:
                        needs.append(ph.hosts_needed(gang.plan, len(gangs)))
                    break
                del gangs[key]
                self._placed(gang, hosts, t)
            if not gangs:
                pending.pop(key_shape, None)
        drain = drain_at(spec)
        if needs and (drain is None or t < drain):
            state = PoolState(alive=ph.alive, free=ph.free, provisioning=ph.provisioning)
            if aon:
                for g, n in zip(asking, gang_requests(spec, state, needs, t), strict=True):
                    if n:
                        self._request_hosts(pool, n, t, g.key)
            else:
                for n in hosts_to_request(spec, state, needs, t):
                    self._request_hosts(pool, n, t, None)
        self._after_pass(ph, t)

    def _stocked_out(self: SimBackend, pool: str, t: float) -> float | None:
        """End of the stockout window ``t`` falls in, or None."""
        ends = [until for start, until in self._stockouts.get(pool, []) if start <= t < until]
        return max(ends) if ends else None

    def _absent_for(self: SimBackend, ph: PoolHosts, hosts: int) -> list[Host]:
        if ph.multi_host_tpu:   # whole slices
            slices = [s for s, hs in ph.slices.items() if all(h.state == ABSENT for h in hs)]
            return [h for s in slices[: -(-hosts // ph.spec.slice_hosts)] for h in ph.slices[s]]
        return ph.absent_hosts(hosts)

    def _request_hosts(self: SimBackend, pool: str, hosts: int, t: float, gang: str | None) -> None:
        """Ask the pool's mode for ``hosts`` hosts: one request arriving whole (queued DWS), or
        each host after its own delay (the others; none during a stockout: a retry event at the
        window's end asks again)."""
        ph = self.pools[pool]
        script = {**self._defaults, **self._pool_script(pool)}
        delay, jitter = script["provisioning_delay"], script["provisioning_jitter"]
        if all_or_nothing(ph.spec):
            take = self._absent_for(ph, hosts)
            if len(take) < hosts:
                return
            req = DwsRequest(next(self._seq), pool, take, gang)
            self._requests[req.id] = req
            if gang is not None:
                self._gang_request[gang] = req.id
            for h in take:
                ph.set_state(h, PROVISIONING, t)
            self._push(t + delay + (self.rng.uniform(0, jitter) if jitter else 0.0), "dws_arrive", req.id)
            return
        if self._stocked_out(pool, t) is not None:
            return
        for h in self._absent_for(ph, hosts):
            ph.set_state(h, PROVISIONING, t)
            extra = self.rng.uniform(0, jitter) if jitter else 0.0
            self._push(t + delay + extra, "ready", h.name, h.generation)

    def _on_dws_arrive(self: SimBackend, t: float, rid: int) -> None:
        req = self._requests.get(rid)
        if req is None:
            return
        until = self._stocked_out(req.pool, t)
        if until is not None:    # a stockout delays the whole request
            self._push(until, "dws_arrive", rid)
            return
        del self._requests[rid]
        if req.gang is not None:
            self._gang_request.pop(req.gang, None)
        for h in req.hosts:
            if h.state == PROVISIONING:
                self._host_up(h, t)

    def _cancel_request(self: SimBackend, gang: str, t: float) -> None:
        """The gang no longer waits (placed, stopped): its queued request is withdrawn."""
        rid = self._gang_request.pop(gang, None)
        req = self._requests.pop(rid, None) if rid is not None else None
        for h in req.hosts if req else []:
            if h.state == PROVISIONING:
                self._gone(h, t)
