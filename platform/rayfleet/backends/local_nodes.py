"""The Ray nodes of the local cluster: finding their processes, waiting for the GCS to list them,
killing and restarting one host (a lost or repaired VM), and what the GCS says about them.

:class:`LocalNodes` is mixed into :class:`rayfleet.backends.local.LocalBackend` (it uses its state,
lock and Ray calls); how hosts come and go over time is :mod:`rayfleet.backends.local_hosts`.
"""

from __future__ import annotations

import time
from typing import Any

from ..api.labels import LABEL_HOST, LABEL_POOL, LABEL_TPU_SLICE
from ..errors import BackendError, NotFound
from . import local_procs
from .base import HostPhase

LABEL_NODE_ROLE = "rayfleet.io/node-role"


class LocalNodes:
    """Ray-node plumbing of the local backend (mixin)."""

    # Set by LocalBackend.
    _state: dict[str, Any] | None
    temp_dir: str
    host_plans: dict[str, Any]
    pools: dict[str, Any]
    cluster: Any
    start_timeout_s: float

    def _find_proc(self, binary: str, needle: str, timeout_s: float = 10.0) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            for p in local_procs.all_procs().values():
                head = p.cmdline.split(" ", 1)[0]
                if head.endswith("/" + binary) and needle in p.cmdline and self.temp_dir in p.cmdline:
                    return p.pid
            if time.monotonic() > deadline:
                raise BackendError(f"no {binary} process with {needle} found for local cluster {self.cluster.name!r}")
            time.sleep(0.1)

    def _find_raylet(self, node_manager_port: int) -> int:
        return self._find_proc("raylet", f"--node_manager_port={node_manager_port}")

    def _nodes(self) -> list[Any]:
        return self._list("nodes")

    def _head_node_ip(self) -> str | None:
        for n in self._nodes():
            if (n.labels or {}).get(LABEL_NODE_ROLE) == "head" and n.state == "ALIVE":
                return n.node_ip
        return None

    def _wait_nodes(self, deadline: float) -> None:
        """Wait until the GCS lists every started host ALIVE; record node ids."""
        st = self._state
        assert st is not None
        want = {n for n, h in st["hosts"].items() if h.get("phase", HostPhase.READY) != HostPhase.PROVISIONING and not h.get("starter_pid")}
        while True:
            alive = {}
            for n in self._nodes():
                host = (n.labels or {}).get(LABEL_HOST)
                if n.state == "ALIVE" and host in want:
                    alive[host] = n.node_id
                if n.state == "ALIVE" and (n.labels or {}).get(LABEL_NODE_ROLE) == "head":
                    st["head"]["node_id"] = n.node_id
            if set(alive) >= want:
                for host, nid in alive.items():
                    st["hosts"][host]["node_id"] = nid
                return
            if time.monotonic() > deadline:
                raise BackendError(f"hosts {sorted(want - set(alive))} did not register with the GCS within {self.start_timeout_s:.0f}s")
            time.sleep(0.3)

    def _host_alive(self, name: str) -> bool:
        st = self._state
        h = (st or {}).get("hosts", {}).get(name)
        return bool(h) and local_procs.pid_alive(h.get("raylet_pid"), self.temp_dir)

    def _reconcile_hosts(self) -> None:
        """Restart existing hosts whose raylet is gone; end hosts no longer configured. (Hosts
        being provisioned are the capacity pass's: :meth:`reconcile_capacity`.)"""
        st = self._state
        assert st is not None
        for name in [n for n in st["hosts"] if n not in self.host_plans]:
            self._kill_host_procs(name)
            del st["hosts"][name]
        dead = [n for n, h in st["hosts"].items() if h.get("raylet_pid") and not h.get("starter_pid") and not self._host_alive(n)]
        if dead:
            ports = self._new_ports()  # type: ignore[attr-defined]
            deadline = time.monotonic() + self.start_timeout_s
            for n in dead:
                self._kill_host_procs(n)
            self._start_hosts(dead, ports, deadline)
            self._wait_nodes(deadline)
        self._save_state()


    def _kill_host_procs(self, name: str) -> None:
        """SIGKILL everything of one host: its raylet and what runs under it (agents, workers),
        its log monitor, and workers an earlier death of its raylet orphaned."""
        st = self._state
        assert st is not None
        h = st["hosts"].get(name)
        if not h or not h.get("raylet_pid"):
            return
        raylet = h["raylet_pid"]
        host_dir = self.host_temp_dir(name) + "/" if name in self.host_plans else None
        procs = local_procs.all_procs()
        roots = [raylet] if local_procs.pid_alive(raylet, self.temp_dir) else []
        port = (h.get("ports") or {}).get("node_manager")
        if not roots and port:   # the recorded pid is gone: the raylet that now serves the host's port, if one does
            try:
                roots = [self._find_proc("raylet", f"--node_manager_port={port}", timeout_s=0.0)]
            except BackendError:
                pass
        if host_dir:
            roots += [p.pid for p in procs.values() if host_dir in p.cmdline]
        pids = local_procs.descendants(roots, procs)
        pids |= {p for p in local_procs.cluster_pids(self.temp_dir, [raylet]) if _raylet_env(p) == raylet}
        if pids:
            local_procs.kill_pids(pids, grace_s=0)

    def kill_host(self, host: str) -> None:
        """Simulate the loss of a host: SIGKILL its raylet and every process under it."""
        with self._lock():
            st = self._require_up()
            if host not in st["hosts"]:
                raise NotFound(f"no host {host!r} in local cluster {self.cluster.name!r}; hosts: {sorted(st['hosts'])}", field="host")
            self._kill_host_procs(host)

    def restart_host(self, host: str) -> None:
        """Bring a dead host back (a repaired or replaced node): a new Ray node with the same labels."""
        with self._lock():
            self._require_up()
            if host not in self.host_plans:
                raise NotFound(f"no host {host!r} in local cluster {self.cluster.name!r}", field="host")
            if self._host_alive(host):
                return
            self._kill_host_procs(host)
            deadline = time.monotonic() + self.start_timeout_s
            self._start_hosts([host], self._new_ports(), deadline)  # type: ignore[attr-defined]
            self._wait_nodes(deadline)
            self._save_state()

    def host_names(self, pool: str | None = None) -> list[str]:
        return [h.name for h in self.host_plans.values() if pool is None or h.pool == pool]

    def nodes(self) -> list[dict[str, Any]]:
        """Every Ray node the GCS knows (alive and dead): node id, host, pool, labels, resources."""
        self._require_up()
        out = []
        for n in self._nodes():
            labels = dict(n.labels or {})
            out.append({
                "node_id": n.node_id,
                "alive": n.state == "ALIVE",
                "host": labels.get(LABEL_HOST),
                "pool": labels.get(LABEL_POOL),
                "head": labels.get(LABEL_NODE_ROLE) == "head",
                "labels": labels,
                "resources": dict(n.resources_total or {}),
            })
        return out

    def pool_node_ids(self, pool: str) -> set[str]:
        """Node ids (alive or dead) of every Ray node that was a host of ``pool``."""
        return {n["node_id"] for n in self.nodes() if n["pool"] == pool}

    def _pick_slice(self, pool: str) -> str:
        """The TPU slice of ``pool`` with the most alive, free hosts; on ties one whose hosts do not
        exist yet (the autoscaler can provision it whole), then the lowest index."""
        spec = self.pools[pool]
        alive: dict[str, str] = {}
        for n in self._nodes():
            host = (n.labels or {}).get(LABEL_HOST)
            if n.state == "ALIVE" and host in self.host_plans:
                alive[host] = n.node_id
        busy = self._busy_node_ids()
        present = set((self._state or {}).get("hosts", {}))
        best, best_key = None, (-1, -1)
        for s in range(spec.max_replicas):
            hosts = [h for h in self.host_plans.values() if h.pool == pool and h.slice_index == s]
            free = sum(1 for h in hosts if h.name in alive and alive[h.name] not in busy)
            key = (free, 1 if free == 0 and not any(h.name in present for h in hosts) else 0)
            if key > best_key:
                best, best_key = hosts[0].labels[LABEL_TPU_SLICE], key
        assert best is not None
        return best


def _raylet_env(pid: int) -> int | None:
    env = local_procs._environ(pid)
    return local_procs._raylet_pid_of(env)
