"""A throwaway local Ray cluster of simulated pool hosts, for the Serve tests and benchmark.

Each simulated host is one ``ray start --block`` process (its own raylet) carrying the Ray node
labels and resources of :mod:`rayfleet.api.labels`, so placement sees the same thing it sees on
GKE. Everything is private to this object: its own temp dir (``/tmp/rf-serve-...``), free ports
for every listener (GCS, dashboard, dashboard agent, Ray client, Serve HTTP), a small object store,
usage stats off and an explicit ``RAY_AUTH_MODE``. It never runs ``ray stop`` (that would stop
every Ray cluster on the machine): each node is stopped by signalling its own ``ray start`` process,
and :meth:`kill_host` SIGKILLs one host's raylet to simulate losing that host.

The production path is ``rayfleet.backends.local.LocalBackend``; this helper exists so that the
``serve`` package is tested on real multi-node Ray without depending on the control service.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..api import PoolSpec
from ..api.labels import LABEL_HOST, node_labels, node_resources


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Direct and indirect child pids of ``pid`` (from /proc; psutil is not a dependency)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces; the ppid is the 2nd field after the closing paren.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@dataclass
class Host:
    """One simulated host: a Ray node started by its own ``ray start --block`` process."""

    name: str
    pool: str | None
    labels: dict[str, str]
    proc: subprocess.Popen
    node_id: str | None = None

    def raylet_pid(self) -> int | None:
        for pid in _children(self.proc.pid):
            if _comm(pid) == "raylet":
                return pid
        return None


@dataclass
class LocalServeCluster:
    """Head + simulated pool hosts. Use as a context manager, or call :meth:`start` / :meth:`stop`."""

    pools: dict[str, tuple[PoolSpec, int]] = field(default_factory=dict)  # name -> (spec, hosts)
    head_cpus: int = 2
    cpus_per_host: int = 1  # `ray start --num-cpus` takes whole CPUs
    object_store_mib: int = 96
    auth_mode: str = "disabled"
    temp_root: str | None = None
    start_timeout_s: float = 90.0

    def __post_init__(self) -> None:
        self.hosts: list[Host] = []
        self.head: subprocess.Popen | None = None
        self.gcs_port = 0
        self.dashboard_port = 0
        self.serve_port = free_port()
        self._tmp: str | None = None
        self._logs: list[object] = []

    # ------------------------------------------------------------ addresses

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def temp_dir(self) -> str:
        assert self._tmp is not None
        return self._tmp

    def env(self) -> dict[str, str]:
        """Environment for processes that talk to this cluster (drivers, `ray` CLI)."""
        env = dict(os.environ)
        env.update(
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE=self.auth_mode,
            RAY_ADDRESS=self.address,
            RAY_DEDUP_LOGS="0",
        )
        return env

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalServeCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ray(self) -> str:
        return str(Path(sys.executable).with_name("ray"))

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(Path(self.temp_dir) / f"{log_name}.log", "wb")  # closed in stop()
        self._logs.append(log)
        return subprocess.Popen(
            [self._ray(), "start", "--block", "--disable-usage-stats", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _common_args(self, temp_dir: str) -> list[str]:
        return [
            f"--temp-dir={temp_dir}",
            f"--object-store-memory={self.object_store_mib * 2**20}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            f"--dashboard-agent-listen-port={free_port()}",
        ]

    def start(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="rf-serve-", dir=self.temp_root or "/tmp")
        try:
            for attempt in range(3):  # fresh ports if one found free was taken meanwhile
                self.gcs_port = free_port()
                self.dashboard_port = free_port()
                self.head = self._spawn(
                    [
                        "--head",
                        f"--port={self.gcs_port}",
                        "--include-dashboard=true",
                        "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={self.dashboard_port}",
                        f"--ray-client-server-port={free_port()}",
                        f"--num-cpus={self.head_cpus}",
                        "--num-gpus=0",
                        "--labels=rayfleet.io/role=head",
                        *self._common_args(self.temp_dir),
                    ],
                    f"head-{attempt}",
                )
                try:
                    self._wait_nodes(1)
                    break
                except RuntimeError:
                    self._reap(self.head)
                    self.head = None
                    if attempt == 2:
                        raise
            self.add_hosts([(pool, spec, i) for pool, (spec, count) in self.pools.items() for i in range(count)])
            self._wait_dashboard()
        except BaseException:
            self.stop()
            raise

    def add_host(self, pool: str, spec: PoolSpec, index: int) -> Host:
        """Start one simulated host of ``pool``: host ``index`` (its slice and worker id for TPU pools)."""
        return self.add_hosts([(pool, spec, index)])[0]

    def add_hosts(self, wanted: list[tuple[str, PoolSpec, int]], *, attempts: int = 3) -> list[Host]:
        """Start several hosts at once (each has its own temp dir, so they can start in parallel).

        A host whose ``ray start`` fails is started again with fresh ports: on a shared machine a
        port found free can be taken before the node binds it.
        """
        started: dict[int, Host] = {}
        todo = list(range(len(wanted)))
        for attempt in range(attempts):
            for i in todo:
                started[i] = self._start_host(*wanted[i])
            deadline = time.monotonic() + self.start_timeout_s
            while True:
                failed = [i for i in todo if started[i].proc.poll() is not None]
                alive = self._alive_node_ids()
                registered = [i for i in todo if started[i].name in alive]
                if len(registered) + len(failed) == len(todo) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            for i in registered:
                started[i].node_id = alive[started[i].name]
            todo = [i for i in todo if i not in registered]
            if not todo:
                return [started[i] for i in range(len(wanted))]
            for i in todo:
                self.hosts.remove(started[i])
                self._reap(started[i].proc)
            if attempt == attempts - 1:
                names = ", ".join(started[i].name for i in todo)
                raise RuntimeError(f"hosts {names} did not start; see their logs in {self.temp_dir}")
        raise AssertionError("unreachable")

    def _alive_node_ids(self) -> dict[str, str]:
        """Host label -> node id of the alive nodes (empty while the dashboard is not up)."""
        try:
            return {n.get("labels", {}).get(LABEL_HOST): n["node_id"] for n in self.nodes()}
        except Exception:
            return {}

    def _start_host(self, pool: str, spec: PoolSpec, index: int) -> Host:
        if spec.is_tpu:
            per_slice = spec.slice_hosts
            labels = node_labels(pool, spec, slice_index=index // per_slice, host_index=index % per_slice)
            resources = node_resources(spec, host_index=index % per_slice)
        else:
            labels = node_labels(pool, spec, host_index=index)
            resources = node_resources(spec, host_index=index)
        num_gpus = spec.accelerators_per_host if spec.accelerator is not None and not spec.is_tpu else 0
        name = labels[LABEL_HOST]
        proc = self._spawn(
            [
                f"--address={self.address}",
                f"--num-cpus={self.cpus_per_host}",
                f"--num-gpus={num_gpus}",
                f"--resources={json.dumps(resources)}",
                "--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
                # Nothing here streams worker logs to a driver; the log files stay in the host's dir.
                "--include-log-monitor=false",
                *self._common_args(str(Path(self.temp_dir) / name)),
            ],
            f"host-{name}",
        )
        host = Host(name=name, pool=pool, labels=labels, proc=proc)
        self.hosts.append(host)
        return host

    @staticmethod
    def _reap(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every node this object started (never touches other Ray clusters).

        SIGTERM to each ``ray start --block`` (hosts first), then SIGKILL to whatever is left in their
        process groups (raylets, workers, agents) after ``grace_s``.
        """
        procs = [h.proc for h in self.hosts] + ([self.head] if self.head else [])
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for log in self._logs:
            with contextlib.suppress(Exception):
                log.close()  # type: ignore[attr-defined]
        self._logs.clear()
        self.hosts.clear()
        self.head = None
        if self._tmp and os.environ.get("RAYFLEET_KEEP_TMP") != "1":
            shutil.rmtree(self._tmp, ignore_errors=True)

    def kill_host(self, host: Host) -> None:
        """Lose a host: SIGKILL its raylet (its workers die with it), then reap its processes."""
        pid = host.raylet_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(host.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            host.proc.wait(timeout=10)

    # ------------------------------------------------------------ observation

    def nodes(self) -> list[dict]:
        """Alive nodes as the dashboard's state API lists them."""
        req = urllib.request.Request(f"{self.dashboard_url}/api/v0/nodes?limit=1000&detail=1")
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.load(resp)
        return [n for n in body["data"]["result"]["result"] if n.get("state") == "ALIVE"]

    def _wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.head is not None and self.head.poll() is not None:
                raise RuntimeError(f"`ray start --head` exited with {self.head.returncode}; see {self.temp_dir}")
            try:
                if len(self.nodes()) >= count:
                    return
            except Exception as e:  # dashboard not up yet
                last = e
            time.sleep(0.5)
        raise TimeoutError(f"{count} Ray nodes not alive after {self.start_timeout_s}s (last error: {last})")

    def _wait_dashboard(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.dashboard_url}/api/serve/applications/", timeout=5) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.5)
        raise TimeoutError("the dashboard's Serve API did not answer")

    def hosts_of(self, pool: str) -> list[Host]:
        return [h for h in self.hosts if h.pool == pool]
