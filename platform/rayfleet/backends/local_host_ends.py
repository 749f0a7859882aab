"""How the local backend's hosts end: removed (scale-down, loss, deadline), drained ahead of a
reclaim or a recycle, cordoned and repaired. Mixed into
:class:`~rayfleet.backends.local_hosts.LocalHosts` (see its docstring for the phases).

A reclaim (spot) and a recycle (DWS flex-start, ``nodeRecyclingLeadTime`` before its run time ends,
with a replacement host asked for at once) both drain the node in Ray (``ray drain-node``, reason
preemption, with the deadline): Ray places nothing new there, the runs on it carry the notice, and
the node is killed at the deadline.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

from ..capacity.provisioning import host_expires_at, reclaim_notice
from ..errors import Conflict, NotFound
from .base import HostPhase, NoticeKind
from .local_capacity import hosts_to_start, lifetime_due

log = logging.getLogger("rayfleet.backends.local_hosts")


class HostEnds:
    """Removal, drains (reclaim, recycle), cordons and repairs (mixin of LocalHosts)."""

    def _remove_host(self, name: str) -> None:
        """The host goes (scale-down, reclaim, loss): kill its Ray node, forget it."""
        st = self._state  # type: ignore[attr-defined]
        rec = st["hosts"].get(name)
        if rec is None:
            return
        self._kill_host_procs(name)  # type: ignore[attr-defined]
        if rec.get("raylet_pid") in st["raylet_pids"]:
            st["raylet_pids"].remove(rec["raylet_pid"])
        del st["hosts"][name]

    def _drain(self, name: str, message: str, deadline_s: float | None = None) -> None:
        """``ray drain-node`` (reason preemption): Ray schedules nothing new on the node."""
        rec = self._records()[name]
        if not rec.get("node_id"):
            return
        ray_bin = str(Path(self.python).parent / "ray")  # type: ignore[attr-defined]
        st = self._state  # type: ignore[attr-defined]
        # (the address from the state in hand: re-reading it here could drop what the caller changed)
        cmd = [ray_bin, "drain-node", f"--address={st['node_ip']}:{st['gcs_port']}", f"--node-id={rec['node_id']}",
               "--reason=DRAIN_NODE_REASON_PREEMPTION", f"--reason-message={message}"]
        if deadline_s is not None:
            cmd.append(f"--deadline-remaining-seconds={max(1, int(deadline_s))}")
        env = self._process_env()  # type: ignore[attr-defined]
        ids = self.ray_ids()  # type: ignore[attr-defined]
        as_user: dict[str, Any] = {}
        if ids is not None:
            env["HOME"] = str(self.ray_home)  # type: ignore[attr-defined]
            as_user = {"user": ids[0], "group": ids[1], "extra_groups": []}
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=str(self.ray_home), **as_user)  # type: ignore[attr-defined]
        if r.returncode != 0:
            log.warning("local cluster: ray drain-node %s failed (%s): %s", name, r.returncode, (r.stderr or r.stdout)[-500:])

    def _drain_with_notice(self, name: str, kind: NoticeKind, deadline: float, msg: str, now: float, **extra: Any) -> None:
        """The host drains until ``deadline`` and its runs carry the notice; it goes at the deadline."""
        self._records()[name].update(phase=HostPhase.DRAINING.value, since=now, message=msg,
                                     notice={"kind": kind.value, "deadline": deadline, "message": msg}, **extra)
        self._save_state()  # type: ignore[attr-defined]
        self._drain(name, msg, deadline - now)

    def _reclaim(self, name: str, notice_s: float, now: float) -> None:
        msg = f"host {name} is reclaimed (spot preemption) at its deadline, {notice_s:.0f}s after the notice"
        self._drain_with_notice(name, NoticeKind.RECLAIM, now + notice_s, msg, now)

    def _host_record(self, host: str) -> dict[str, Any]:
        """The record of ``host`` of the running cluster (under the lock), or NotFound naming the hosts."""
        st = self._require_up()  # type: ignore[attr-defined]
        rec = st["hosts"].get(host)
        if rec is None:
            raise NotFound(f"no host {host!r} in local cluster {self.cluster.name!r}; hosts: {sorted(st['hosts'])}", field="host")  # type: ignore[attr-defined]
        return rec

    def _lifetime(self, name: str, rec: dict[str, Any], now: float) -> None:
        """A DWS flex-start host past its recycle time is recycled; one past its run time goes."""
        due = lifetime_due(self.pools[rec["pool"]], rec["started_at"], now)  # type: ignore[attr-defined]
        if due is None:
            return
        what, end = due
        if what == "expire":
            log.info("local cluster: host %s reached its run time (maxRunDuration): it goes", name)
            self._remove_host(name)
        else:
            self._recycle(name, end, now)

    def _recycle(self, name: str, expires: float, now: float) -> str | None:
        """Ask for a replacement of ``name`` (returned; None when the pool has no host left to add)
        and drain ``name`` with a RECYCLE notice until ``expires``."""
        st = self._state  # type: ignore[attr-defined]
        rec = st["hosts"][name]
        plans = [h for h in self.host_plans.values() if h.pool == rec["pool"]]  # type: ignore[attr-defined]
        spare = hosts_to_start(plans, set(st["hosts"]), 1, [])
        replacement = spare[0] if spare else None
        if replacement is not None:
            self._add_provisioning(replacement, now)
            st["hosts"][replacement]["replaces"] = name
        msg = (f"host {name} is recycled: its run time ends at its deadline; "
               + (f"replacement {replacement} asked for" if replacement else "no replacement: the pool is at maxReplicas"))
        log.info("local cluster: %s", msg)
        self._drain_with_notice(name, NoticeKind.RECYCLE, expires, msg, now, replaced_by=replacement)
        return replacement

    def recycle_host(self, host: str, notice_s: float | None = None) -> tuple[str | None, float]:
        """Recycle a host now, as GKE recycles a DWS flex-start node ``nodeRecyclingLeadTime``
        before its run time ends: a replacement is asked for, the host drains with a RECYCLE
        notice and goes at the deadline (``notice_s`` from now; default: the pool's lead time, else
        its remaining run time). Returns (the replacement host or None, the deadline)."""
        now = time.time()
        with self._lock():  # type: ignore[attr-defined]
            rec = self._host_record(host)
            if self._phase(rec) is not HostPhase.READY:
                raise Conflict(f"host {host!r} is {self._phase(rec).value}; only a ready host is recycled", field="host")
            if notice_s is None:
                spec = self.pools[rec["pool"]]  # type: ignore[attr-defined]
                lead = getattr(spec.provisioning, "node_recycling_lead_time", None)
                end = host_expires_at(spec, rec.get("started_at") or now)
                notice_s = float(lead) if lead is not None else max(1.0, (end or now + 30.0) - now)
            replacement = self._recycle(host, now + notice_s, now)
            self._save_state()  # type: ignore[attr-defined]
        return replacement, now + notice_s

    def reclaim_host(self, host: str, notice_s: float | None = None) -> float:
        """Reclaim a host with notice, as GCE reclaims a spot VM: its runs get a RECLAIM notice,
        Ray places nothing new on it, and its Ray node is killed at the deadline (returned)."""
        now = time.time()
        with self._lock():  # type: ignore[attr-defined]
            rec = self._host_record(host)
            if notice_s is None:
                notice_s = reclaim_notice(self.pools[rec["pool"]]) or 30.0  # type: ignore[attr-defined]
            self._reclaim(host, notice_s, now)
            self._save_state()  # type: ignore[attr-defined]
        return now + notice_s

    # ------------------------------------------------------------------ cordon and repair

    def cordon(self, host: str, reason: str) -> None:
        """Nothing new on ``host`` (drained in Ray); repaired after spec.hostHealth.repairTime."""
        now = time.time()
        with self._lock():  # type: ignore[attr-defined]
            rec = self._host_record(host)
            if self._phase(rec) in (HostPhase.CORDONED, HostPhase.REPAIRING, HostPhase.PROVISIONING):
                return
            repair = float(self.cluster.spec.host_health.repair_time)  # type: ignore[attr-defined]
            rec.update(phase=HostPhase.CORDONED.value, since=now, cordon_reason=reason, repair_at=now + repair,
                       message=f"cordoned: {reason}")
            self._save_state()  # type: ignore[attr-defined]
            self._drain(host, f"cordoned: {reason}")
            self._save_state()  # type: ignore[attr-defined]

    def uncordon(self, host: str) -> None:
        """Return a cordoned host to service now: its Ray node is restarted (repaired)."""
        now = time.time()
        with self._lock():  # type: ignore[attr-defined]
            rec = self._host_record(host)
            if self._phase(rec) is HostPhase.CORDONED:
                self._repair(host, now)
                self._save_state()  # type: ignore[attr-defined]

    def _repair(self, name: str, now: float) -> None:
        st = self._state  # type: ignore[attr-defined]
        self._remove_host(name)
        self._add_provisioning(name, now, HostPhase.REPAIRING)
        st["hosts"][name]["message"] = "repairing: its Ray node is restarted"
