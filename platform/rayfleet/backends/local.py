"""The local backend: a real Ray cluster on this machine, each simulated GKE host a Ray node.

``up()`` starts ``ray start --head`` and one ``ray start --address`` per simulated host, each host
labelled and resourced as its GKE node would be (:mod:`rayfleet.api.labels`): ``rayfleet.io/pool``,
accelerator and TPU slice labels, ``--num-gpus`` fake GPUs, ``TPU`` chips,
``accelerator_type:<type>`` and the slice-head resource on host 0 of each TPU slice; few CPUs and a
bounded object store. The processes outlive the caller: the cluster's ports and pids are kept in
``<data_dir>/cluster.json`` and any later process (the control service after a restart, the CLI, a
test) re-attaches with ``up()``. ``down()`` ends every process of the cluster and checks none is left.

Runs: every launch is one Ray job (``submission_id`` = run id) submitted through the cluster's
Jobs API. A train-app run's driver is :mod:`rayfleet.train.launcher` (Ray Train ``TorchTrainer``
whose worker group is one placement group pinned to the pool by bundle label selectors); an
entry-point run's driver is :mod:`rayfleet.train.entrypoint` (reserves the gang as one placement
group, then runs the command with the group's name in ``RAYFLEET_PLACEMENT_GROUP``). Driver and
backend talk through the run directory (:mod:`rayfleet.backends.rundir`).

Hosts die for real: :meth:`LocalBackend.kill_host` SIGKILLs a host's raylet and everything under
it. A run whose gang had a bundle on a dead host is reported ``LOST`` and its whole gang is stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..api import Cluster, ClusterSpec, ObjectMeta, PoolSpec
from ..api.labels import LABEL_HOST
from ..errors import BackendError, CapacityError, ConfigError, FieldProblem
from . import local_procs, local_user
from .base import ClusterInfo, HostPhase, LaunchRequest, RunState, RunStatus, checkpoint_key
from .local_capacity import HostPlan, initial_hosts, plan_hosts
from .local_hosts import LocalHosts
from .local_nodes import LABEL_NODE_ROLE, LocalNodes
from .local_start import RESULT_PREFIX
from .placement import GangPlan, feasibility_problems, plan_request
from .ray_jobs import RayJobs
from .rundir import CHECKPOINT_REQUEST_ENV, RunDir, latest_checkpoint_step, read_json, request_doc, write_json
from .sim.scenario import Scenario, load_scenario

log = logging.getLogger(__name__)

STATE_VERSION = 1

#: Memory one simulated host's processes take (raylet ~30 MiB + dashboard agent ~150 MiB +
#: runtime-env agent ~95 MiB RSS, measured on Ray 2.60), not counting its object store.
HOST_PROCESS_MEMORY = 300 * 2**20
#: Memory of the head's processes (GCS, dashboard and its modules, monitors, client server,
#: raylet, agents), not counting its object store.
HEAD_PROCESS_MEMORY = 1200 * 2**20
#: Kept free for the drivers and workers of runs (a 2-worker Train run takes ~1.4 GB).
RUN_HEADROOM_MEMORY = 1536 * 2**20

# Unix socket paths are limited to 107 bytes; Ray appends ~65 bytes to a host's temp dir.
_MAX_TEMP_DIR = 40


def memory_available() -> int:
    """MemAvailable of this machine, bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def memory_needed(hosts: int, object_store: int) -> int:
    """Estimated memory for a head plus ``hosts`` simulated hosts, with room for runs."""
    return HEAD_PROCESS_MEMORY + object_store + hosts * (HOST_PROCESS_MEMORY + object_store) + RUN_HEADROOM_MEMORY


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


class _Ports:
    """Free TCP ports for Ray's servers, never the same one twice in one session.

    Chosen at random *below* the kernel's ephemeral range (and above Ray's default worker port
    range, 10002-19999): a port from the ephemeral range may be taken as the source port of some
    outgoing connection between the moment it is picked and the moment ``ray start`` binds it.
    """

    LOW = 20000

    def __init__(self) -> None:
        self.used: set[int] = set()
        self.high = max(self.LOW + 1000, _ephemeral_range()[0] - 1)
        self.rng = random.Random()

    def take(self) -> int:
        for _ in range(1000):
            port = self.rng.randint(self.LOW, self.high)
            if port in self.used:
                continue
            try:
                with socket.socket() as s:
                    s.bind(("", port))
            except OSError:
                continue
            self.used.add(port)
            return port
        raise BackendError(f"no free TCP port found in {self.LOW}-{self.high}")


class LocalBackend(LocalHosts, LocalNodes):
    """Real Ray on this machine. Implements :class:`rayfleet.backends.base.Backend`."""

    name = "local"

    def __init__(
        self,
        pools: dict[str, PoolSpec],
        data_dir: str | Path,
        *,
        cluster: Cluster | None = None,
        temp_dir: str | None = None,
        auth_mode: str = "disabled",
        placement_timeout_s: float = 120.0,
        node_death_timeout_s: float = 5.0,
        python: str | None = None,
        run_as: str | None = None,
        checkpoint_root: str | Path | None = None,
    ):
        """``pools``: the pools of the cluster (from the config); ``data_dir``: where the cluster's
        state file, run directories and process logs live.

        ``auth_mode``: Ray's ``RAY_AUTH_MODE`` for the cluster: ``token`` (what the product uses,
        see :func:`rayfleet.backends.make_backend`: a per-cluster token in ``<data_dir>/auth_token``,
        never ``~/.ray/auth_token``, held by the control service; clients use :meth:`client_env`)
        or ``disabled`` (a development cluster for one user). Either way every Ray server of the
        cluster listens on 127.0.0.1 only (``--node-ip-address=127.0.0.1``, see
        :mod:`rayfleet.backends.ray_site.sitecustomize`).
        ``placement_timeout_s``: how long a gang may wait for its placement group before the run
        fails (Ray Train's worker-group start timeout). ``node_death_timeout_s``: about how long the
        GCS takes to declare a silent host dead. ``run_as``: the unprivileged user the cluster's
        Ray processes run as (this process must be root; :func:`local_user.default_run_as`): then
        the Ray side's files (run directories, default checkpoints, the Ray token) live in
        ``<temp_dir>/rf``, owned by that user, and ``data_dir`` is closed to it (0700).
        ``checkpoint_root``: where a job without ``checkpoint.storagePath`` keeps its checkpoints
        (default ``<Ray side>/checkpoints``); several local clusters of one platform share one, as
        GKE clusters share a bucket, so a job moved between them resumes
        (:func:`rayfleet.backends.make_cluster_set`).
        """
        if auth_mode not in ("disabled", "token"):
            raise ConfigError(FieldProblem(field="auth_mode", problem=f"must be 'disabled' or 'token', got {auth_mode!r}"))
        self.cluster = cluster or Cluster(metadata=ObjectMeta(name="local"), spec=ClusterSpec())
        wanted = self.cluster.spec.pools
        unknown = [p for p in wanted if p not in pools]
        if unknown:
            raise ConfigError(FieldProblem(field="spec.pools", problem=f"unknown pools {unknown}", document=self.cluster.ref()))
        self.pools: dict[str, PoolSpec] = {p: pools[p] for p in wanted} if wanted else dict(pools)
        #: Every host the pools can have (at their maxReplicas); which exist now: ``hosts()``.
        self.host_plans: dict[str, HostPlan] = {h.name: h for h in plan_hosts(self.pools)}
        self.data_dir = Path(data_dir).resolve()
        local = self.cluster.spec.local
        #: Scripted capacity (spec.local.scenario): provisioning delays, stockouts, losses, reclaims.
        self.scenario: Scenario | None = load_scenario(local.scenario) if local.scenario else None
        if self.scenario is not None:
            by_pool: dict[str, list[str]] = {}
            for h in self.host_plans.values():
                by_pool.setdefault(h.pool, []).append(h.name)
            self.scenario.check_against(by_pool, file=local.scenario)
        self.temp_dir = temp_dir or local.temp_dir or f"/tmp/rayfleet-{hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:10]}"
        if len(self.temp_dir) > _MAX_TEMP_DIR:
            raise ConfigError(FieldProblem(field="spec.local.tempDir", problem=f"{self.temp_dir!r} is longer than {_MAX_TEMP_DIR} characters (Ray's socket paths would exceed the OS limit)", document=self.cluster.ref()))
        self.object_store_memory = int(local.object_store_memory)
        # ray start takes whole CPUs only.
        self.host_cpus = max(1, math.ceil(local.cpus_per_host))
        self.head_cpus = max(0, math.ceil(local.head_cpus))
        self.auth_mode = auth_mode
        self.placement_timeout_s = placement_timeout_s
        self.node_death_timeout_s = node_death_timeout_s
        # The Python the cluster's processes run: the caller's, unless $RAYFLEET_RAY_PYTHON names
        # another (e.g. one the Ray user can reach when this one sits in a directory closed to it).
        self._python = python or os.environ.get("RAYFLEET_RAY_PYTHON")
        self.start_timeout_s = float(self.cluster.spec.start_timeout)
        self.run_as = run_as
        #: Where the Ray side's files live: what the cluster's processes (and so every job) can read.
        self.ray_home = Path(self.temp_dir) / "rf" if run_as else self.data_dir
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root else self.ray_home / "checkpoints"
        self._ids: tuple[int, int] | None = None
        self._state: dict[str, Any] | None = None
        self._jobs: RayJobs | None = None

    @classmethod
    def from_config(cls, config: Any, data_dir: str | Path, **kwargs: Any) -> LocalBackend:
        """From a :class:`rayfleet.config.PlatformConfig`."""
        return cls({n: p.spec for n, p in config.pools.items()}, data_dir, cluster=config.cluster, **kwargs)

    @classmethod
    def from_config_files(cls, paths: list[str | Path], data_dir: str | Path, **kwargs: Any) -> LocalBackend:
        from ..config import load_config

        return cls.from_config(load_config(paths), data_dir, **kwargs)

    # ------------------------------------------------------------------ paths and state

    @property
    def state_path(self) -> Path:
        return self.data_dir / "cluster.json"

    @property
    def runs_dir(self) -> Path:
        return self.ray_home / "runs"

    @property
    def token_path(self) -> Path:
        return self.ray_home / "auth_token"

    @property
    def python(self) -> str:
        """The Python the cluster's processes run: the one given (or ``$RAYFLEET_RAY_PYTHON``), else
        this process's, or one the Ray user can run (:func:`local_user.python_for`)."""
        if self._python is None:
            ids = self.ray_ids()
            self._python = sys.executable if ids is None else local_user.python_for(ids)
        return self._python

    def ray_ids(self) -> tuple[int, int] | None:
        """(uid, gid) the cluster's processes run as; None: this process's own."""
        if self.run_as is None:
            return None
        if self._ids is None:
            self._ids = local_user.ensure_user(self.run_as)
        return self._ids

    def _give(self, path: Path) -> None:
        """Hand ``path`` (recursively) to the Ray user."""
        ids = self.ray_ids()
        if ids is not None and path.exists():
            local_user.give(path, *ids)

    def _prepare_ray_home(self) -> None:
        """The Ray side's directories, owned by the Ray user; this backend's own, closed to it."""
        ids = self.ray_ids()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(self.temp_dir)
        temp.mkdir(parents=True, exist_ok=True)
        for sub in ("runs", "logs"):
            (self.ray_home / sub).mkdir(parents=True, exist_ok=True)
        self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        if ids is None:
            return
        local_user.private_dir(self.data_dir)
        os.chown(temp, *ids)
        local_user.give(self.ray_home, *ids)
        if not self.checkpoint_root.is_relative_to(self.ray_home):
            local_user.give(self.checkpoint_root, *ids)

    def run_dir(self, run_id: str) -> RunDir:
        return RunDir(self.runs_dir / run_id)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "cluster.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _load_state(self) -> dict[str, Any] | None:
        st = read_json(self.state_path)
        if not st or st.get("version") != STATE_VERSION:
            return None
        return st

    def _save_state(self) -> None:
        assert self._state is not None
        write_json(self.state_path, self._state)

    def _head_alive(self, st: dict[str, Any]) -> bool:
        if not local_procs.pid_alive(st["head"].get("gcs_pid"), st["temp_dir"]):
            return False
        try:
            with socket.create_connection(("127.0.0.1", st["gcs_port"]), timeout=2):
                return True
        except OSError:
            return False

    def _current(self) -> dict[str, Any] | None:
        """The running cluster's state (re-read from disk), or None if it is not up."""
        st = self._load_state()
        if st is None or not self._head_alive(st):
            self._state = None
            return None
        self._state = st
        return st

    def _require_up(self) -> dict[str, Any]:
        st = self._state if self._state is not None and self._head_alive(self._state) else self._current()
        if st is None:
            raise BackendError(f"the local Ray cluster {self.cluster.name!r} is not up (call up() first)")
        return st

    # ------------------------------------------------------------------ environment

    def auth_token(self) -> str | None:
        """The cluster's Ray auth token (``auth_mode="token"``), else None."""
        if self.auth_mode != "token":
            return None
        if not self.token_path.exists():
            self.token_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            # Ray's own processes read it (RAY_AUTH_TOKEN_PATH): it belongs to the Ray user.
            self._give(self.token_path)
        return self.token_path.read_text().strip()

    def client_env(self) -> dict[str, str]:
        """Environment a client process needs to talk to this cluster (``ray.init``, the Ray CLI)."""
        env = {"RAY_AUTH_MODE": self.auth_mode, "RAY_USAGE_STATS_ENABLED": "0"}
        if self.auth_mode == "token":
            self.auth_token()
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        st = self._state or self._load_state()
        if st:
            env["RAY_ADDRESS"] = f"{st['node_ip']}:{st['gcs_port']}"
        return env

    def auth_headers(self) -> dict[str, str]:
        """HTTP headers for the cluster's dashboard / Jobs API."""
        token = self.auth_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _process_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(key, None)
        env.update(
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE=self.auth_mode,
            **{local_procs.ENV_MARKER: self.temp_dir},
        )
        # Entry points (`ray job submit -- python train.py`) run with the cluster's Python first
        # on PATH, whatever the PATH of the process that brought the cluster up.
        bin_dir = str(Path(self.python).parent)
        # Every Python process of the cluster keeps node IP 127.0.0.1 (see ray_site/sitecustomize.py),
        # so every Ray server of the cluster listens on loopback only.
        site = str(Path(__file__).with_name("ray_site"))
        env["PYTHONPATH"] = os.pathsep.join([site, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != site)])
        env["PATH"] = os.pathsep.join([bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)])
        # A raylet waits for its dashboard agent to report its ports and aborts if it does not in
        # time; on a loaded 2-core machine the agent's imports alone can take 15 s or more.
        env.setdefault("RAY_agent_register_timeout_ms", "180000")
        env.setdefault("RAY_raylet_start_wait_time_s", "180")
        if self.auth_mode == "token":
            self.auth_token()
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        return env

    @property
    def jobs(self) -> RayJobs:
        st = self._require_up()
        url = f"http://127.0.0.1:{st['dashboard_port']}"
        if self._jobs is None or self._jobs.dashboard_url != url:
            self._jobs = RayJobs(url, headers=self.auth_headers())
        return self._jobs

    def _state_client(self) -> Any:
        from ray.util.state import StateApiClient

        st = self._require_up()
        headers = {"Content-Type": "application/json", **self.auth_headers()}
        return StateApiClient(address=f"http://127.0.0.1:{st['dashboard_port']}", headers=headers)

    def _list(self, resource: str, filters: list | None = None) -> list[Any]:
        from ray.util.state.common import ListApiOptions, StateResource

        res = {"nodes": StateResource.NODES, "placement_groups": StateResource.PLACEMENT_GROUPS, "actors": StateResource.ACTORS}[resource]
        options = ListApiOptions(limit=10_000, timeout=30, detail=True, filters=filters or [])
        return self._state_client().list(res, options=options, raise_on_missing_output=False)

    # ------------------------------------------------------------------ memory

    def memory_plan(self) -> dict[str, int]:
        """The memory estimate ``up()`` checks: needed vs available, bytes."""
        return {
            "hosts": len(self.host_plans),
            "needed": memory_needed(len(self.host_plans), self.object_store_memory),
            "available": memory_available(),
        }

    def check_memory(self, available: int | None = None) -> None:
        """Raise :class:`CapacityError` if this machine cannot hold the configured hosts."""
        n = len(self.host_plans)
        need = memory_needed(n, self.object_store_memory)
        have = memory_available() if available is None else available
        if need > have:
            raise CapacityError(
                f"this machine cannot hold the local cluster {self.cluster.name!r}: {n} simulated hosts need about "
                f"{_mib(need)} (head {_mib(HEAD_PROCESS_MEMORY + self.object_store_memory)} + {n} x "
                f"({_mib(HOST_PROCESS_MEMORY)} Ray processes + {_mib(self.object_store_memory)} object store) + "
                f"{_mib(RUN_HEADROOM_MEMORY)} for runs), but only {_mib(have)} is available; lower the pools' "
                f"maxReplicas, list fewer pools in the Cluster's spec.pools, or lower spec.local.objectStoreMemory",
                field="spec.pools",
            )

    # ------------------------------------------------------------------ up / down

    def up(self) -> ClusterInfo:
        """Start the cluster, or re-attach to the running one and restart any dead host."""
        with self._lock():
            st = self._load_state()
            if st is not None and self._head_alive(st):
                self._state = st
                self._reconcile_hosts()
                return self._info(st)
            if st is not None:
                self._kill_all(st)
            self.check_memory()
            self._start_cluster()
            assert self._state is not None
            return self._info(self._state)

    def down(self) -> None:
        """End every process of the cluster (jobs, workers, raylets, GCS) and forget it."""
        with self._lock():
            st = self._load_state() or {"temp_dir": self.temp_dir, "raylet_pids": []}
            left = self._kill_all(st)
            if left:
                raise BackendError(f"processes of the local cluster survived SIGKILL: {sorted(left)}")
            try:
                self.state_path.unlink()
            except FileNotFoundError:
                pass
            self._state = None
            self._jobs = None

    def info(self) -> ClusterInfo | None:
        st = self._current()
        return self._info(st) if st else None

    def _info(self, st: dict[str, Any]) -> ClusterInfo:
        return ClusterInfo(
            name=self.cluster.name,
            backend=self.name,
            address=f"{st['node_ip']}:{st['gcs_port']}",
            dashboard_url=f"http://127.0.0.1:{st['dashboard_port']}",
            serve_url=f"http://127.0.0.1:{st['serve_port']}" if st.get("serve_port") else None,
        )

    @property
    def address(self) -> str:
        """Ray GCS address (``ray.init(address=...)``, ``ray start --address``)."""
        st = self._require_up()
        return f"{st['node_ip']}:{st['gcs_port']}"

    @property
    def dashboard_url(self) -> str:
        """Ray dashboard and Jobs API (``ray job submit --address``)."""
        return f"http://127.0.0.1:{self._require_up()['dashboard_port']}"

    @property
    def serve_port(self) -> int:
        """The free port rayfleet reserved for Serve's HTTP proxy on this cluster."""
        return int(self._require_up()["serve_port"])

    def _kill_all(self, st: dict[str, Any]) -> set[int]:
        raylets = set(st.get("raylet_pids", []))
        pids = local_procs.cluster_pids(st["temp_dir"], raylets)
        left = local_procs.kill_pids(pids, grace_s=3.0)
        # A process may have been spawned while we were killing; sweep until nothing is left.
        for _ in range(3):
            more = local_procs.cluster_pids(st["temp_dir"], raylets)
            if not more:
                break
            left = local_procs.kill_pids(more, grace_s=0)
        return left

    def _ray_start(self, nodes: list[tuple[str, list[str], str]], deadline: float, extra_env: dict[str, str] | None = None) -> None:
        """Run ``ray start`` for each (name, args, temp dir), in order, in one helper process
        (:mod:`rayfleet.backends.local_start`); raise with the log's tail if one fails."""
        self._prepare_ray_home()
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        ray_logs = self.ray_home / "logs"  # read and run by the Ray user: the spec and the raylet wrapper
        spec = {
            "nodes": [{"name": name, "args": [*args, f"--temp-dir={tmp}", "--disable-usage-stats"]} for name, args, tmp in nodes],
            "raylet_wrapper_dir": str(ray_logs),
        }
        spec_path = ray_logs / "start-spec.json"
        write_json(spec_path, spec)
        self._give(spec_path)
        log_path = logs / "start.log"
        with open(log_path, "ab") as out:
            for n in spec["nodes"]:
                out.write(("$ ray start " + shlex.join(n["args"]) + "\n").encode())
            out.flush()
            offset = out.tell()
            proc = self._popen_start(spec_path, out, extra_env)
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
        text = log_path.read_bytes()[offset:].decode(errors="replace")
        results = {}
        for line in text.splitlines():
            if line.startswith(RESULT_PREFIX):
                r = json.loads(line[len(RESULT_PREFIX):])
                results[r["name"]] = r
        failed = [n for n, _, _ in nodes if not results.get(n, {}).get("ok")]
        if rc != 0 or failed:
            first = failed[0] if failed else nodes[-1][0]
            why = "timed out" if rc is None else (results.get(first, {}).get("error") or f"exited {rc}")
            raise BackendError(
                f"starting {first!r} of local cluster {self.cluster.name!r} failed: {why}\n"
                f"--- {log_path} (tail) ---\n{text[-3000:]}"
            )
        for name, r in results.items():
            log.info("local cluster %s: started %s in %.1fs", self.cluster.name, name, r["seconds"])

    def _popen_start(self, spec_path: Path, out: Any, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """The helper process (:mod:`rayfleet.backends.local_start`) that runs ``ray start`` for
        each node of ``spec_path``, as the Ray user, its output to ``out``."""
        env = self._process_env()
        env.update(extra_env or {})
        cmd = [self.python, "-m", "rayfleet.backends.local_start", str(spec_path)]
        ids = self.ray_ids()
        as_user: dict[str, Any] = {}
        if ids is not None:
            env["HOME"] = str(self.ray_home)
            local_user.check_can_run(self.python, env, *ids, user=str(self.run_as))
            as_user = {"user": ids[0], "group": ids[1], "extra_groups": []}
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=str(self.ray_home), **as_user)

    def _new_ports(self) -> _Ports:
        return _Ports()

    def _start_cluster(self) -> None:
        ports = _Ports()
        deadline = time.monotonic() + self.start_timeout_s
        Path(self.temp_dir).mkdir(parents=True, exist_ok=True)
        head_ports = {k: ports.take() for k in ("gcs", "dashboard", "client", "agent_http", "agent_grpc", "runtime_env", "metrics", "node_manager", "object_manager")}
        period_ms = max(200, int(self.node_death_timeout_s * 1000 / 5))
        head_args = [
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={head_ports['gcs']}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={head_ports['dashboard']}",
            f"--ray-client-server-port={head_ports['client']}",
            f"--num-cpus={self.head_cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_memory}",
            f"--labels={LABEL_NODE_ROLE}=head",
            *self._node_port_args(head_ports),
        ]
        # The GCS declares a silent host dead after 5 missed health checks.
        health = {
            "RAY_health_check_period_ms": str(period_ms),
            "RAY_health_check_timeout_ms": str(period_ms),
            "RAY_health_check_failure_threshold": "5",
        }
        self._state = {
            "version": STATE_VERSION,
            "name": self.cluster.name,
            "temp_dir": self.temp_dir,
            "node_ip": "127.0.0.1",
            "gcs_port": head_ports["gcs"],
            "dashboard_port": head_ports["dashboard"],
            "client_port": head_ports["client"],
            # Serve's HTTP proxy (whoever deploys Serve apps starts it there): the configured port.
            "serve_port": self.cluster.spec.local.serve_port,
            "auth_mode": self.auth_mode,
            "head": {"ports": head_ports},
            "hosts": {},
            "raylet_pids": [],
            "started_at": time.time(),
        }
        try:
            self._save_state()
            first = initial_hosts(self.pools, self.host_plans.values(), self.scenario, self._state["started_at"])
            self._start_hosts(first, ports, deadline, head_args=head_args, extra_env=health)
            self._wait_nodes(deadline)
            self._state["node_ip"] = self._head_node_ip() or "127.0.0.1"
            self._save_state()
        except BaseException:
            self._kill_all(self._state)
            try:
                self.state_path.unlink()
            except FileNotFoundError:
                pass
            self._state = None
            raise

    @staticmethod
    def _node_port_args(p: dict[str, int]) -> list[str]:
        return [
            f"--node-manager-port={p['node_manager']}",
            f"--object-manager-port={p['object_manager']}",
            f"--dashboard-agent-listen-port={p['agent_http']}",
            f"--dashboard-agent-grpc-port={p['agent_grpc']}",
            f"--runtime-env-agent-port={p['runtime_env']}",
            f"--metrics-export-port={p['metrics']}",
        ]

    def host_temp_dir(self, name: str) -> str:
        return f"{self.temp_dir}/n{list(self.host_plans).index(name)}"

    def _host_node_args(self, name: str, ports: _Ports) -> tuple[dict[str, int], list[str]]:
        """The ports and ``ray start`` arguments of one host: its pool's labels and resources."""
        st = self._state
        assert st is not None
        plan = self.host_plans[name]
        hp = {k: ports.take() for k in ("agent_http", "agent_grpc", "runtime_env", "metrics", "node_manager", "object_manager")}
        labels = ",".join(f"{k}={v}" for k, v in plan.labels.items())
        args = [
            f"--address=127.0.0.1:{st['gcs_port']}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.host_cpus}",
            f"--num-gpus={plan.num_gpus}",
            f"--resources={json.dumps(plan.resources)}",
            f"--labels={labels}",
            f"--object-store-memory={self.object_store_memory}",
            *self._node_port_args(hp),
        ]
        return hp, args

    def _start_hosts(self, names: list[str], ports: _Ports, deadline: float, *, head_args: list[str] | None = None, extra_env: dict[str, str] | None = None) -> None:
        """Start the head (if ``head_args``), then the hosts ``names``, one node at a time: on a
        2-core machine concurrent starts starve the dashboard agents, and a raylet whose agent does
        not report its ports within Ray's fixed wait aborts."""
        st = self._state
        assert st is not None
        nodes: list[tuple[str, list[str], str]] = []
        if head_args is not None:
            nodes.append(("head", head_args, self.temp_dir))
        host_ports = {}
        for name in names:
            hp, args = self._host_node_args(name, ports)
            host_ports[name] = hp
            # Each host has its own temp dir, as a real host would: nodes sharing one session dir
            # race for the same raylet socket and log file names.
            nodes.append((name, args, self.host_temp_dir(name)))
        self._ray_start(nodes, deadline, extra_env)
        if head_args is not None:
            hp = st["head"]["ports"]
            st["head"]["raylet_pid"] = self._find_raylet(hp["node_manager"])
            st["head"]["gcs_pid"] = self._find_proc("gcs_server", f"--gcs_server_port={hp['gcs']}")
            st["raylet_pids"].append(st["head"]["raylet_pid"])
        for name in names:
            raylet = self._find_raylet(host_ports[name]["node_manager"])
            now = time.time()
            st["hosts"][name] = {"pool": self.host_plans[name].pool, "ports": host_ports[name], "raylet_pid": raylet, "node_id": None,
                                 "started_at": now, "phase": HostPhase.READY.value, "since": now}
            st["raylet_pids"].append(raylet)
        self._save_state()

    # ------------------------------------------------------------------ runs

    def plan(self, req: LaunchRequest) -> GangPlan:
        """The gang placement a launch request gets on this cluster."""
        spec = self.pools.get(req.pool, req.pool_spec)
        tpu_slice = self._pick_slice(req.pool) if spec.is_tpu and spec.slice_hosts > 1 and req.pool in self.pools else None
        return plan_request(req, spec=spec, host_cpus=self.host_cpus, tpu_slice=tpu_slice)

    def launch(self, req: LaunchRequest) -> str:
        """Submit one attempt as a Ray job (idempotent per run id).

        A gang that can never fit the pool as configured is not submitted: its run is FAILED at
        once with the reason. One that fits but finds no free hosts waits (PENDING) up to
        ``placement_timeout_s`` for its placement group, then FAILS with that reason.
        """
        self._require_up()
        if (req.entrypoint is None) == (req.train_app is None):
            raise BackendError("a launch request needs exactly one of entrypoint or train_app")
        run_id = req.run_id
        rd = self.run_dir(run_id)
        if rd.exists():
            if rd.submitted() or rd.status().get("phase") == "failed" or self.jobs.info(run_id) is not None:
                if not rd.submitted() and self.jobs.info(run_id) is not None:
                    rd.set_submitted()
                return run_id
        else:
            if req.pool not in self.pools:
                problems = [f"pool {req.pool!r} is not part of local cluster {self.cluster.name!r} (pools: {sorted(self.pools)})"]
            else:
                problems = feasibility_problems(req.pool, self.pools[req.pool], req.workers, dict(req.resources_per_worker), req.placement_strategy)
            plan = self.plan(req) if not problems else None
            rd.write_request(self._request_doc(req, plan))
            self._give(rd.path)  # the run's driver (the Ray user) reads its request and writes its status
            if problems:
                rd.update_status(phase="failed", kind="infeasible", error="gang cannot be placed: " + "; ".join(problems), finished_at=time.time())
                return run_id
        module = "rayfleet.train.launcher" if req.train_app else "rayfleet.train.entrypoint"
        entrypoint = f"{shlex.quote(self.python)} -m {module} --run-dir {shlex.quote(str(rd.path))}"
        metadata = {"rayfleet.job": req.job_id, "rayfleet.attempt": str(req.attempt), "rayfleet.pool": req.pool}
        metadata.update({k: str(v) for k, v in req.metadata.items()})
        # Every process of the run (driver, Train workers, the entry point) finds its
        # checkpoint-request file here (rayfleet.train.notice).
        runtime_env = dict(req.runtime_env)
        runtime_env["env_vars"] = {**dict(runtime_env.get("env_vars") or {}), CHECKPOINT_REQUEST_ENV: str(rd.checkpoint_request_path)}
        self.jobs.submit(run_id, entrypoint, runtime_env=runtime_env, metadata=metadata)
        rd.set_submitted()
        return run_id

    def _request_doc(self, req: LaunchRequest, plan: GangPlan | None) -> dict[str, Any]:
        checkpoint_dir = req.checkpoint_dir or str(self.checkpoint_root / checkpoint_key(req.job_id, req.uid))
        doc = request_doc(req, plan=plan, checkpoint_dir=checkpoint_dir, placement_timeout_s=self.placement_timeout_s,
                          fake_accelerators=True)
        doc["created_at"] = time.time()
        return doc

    def stop(self, run_id: str, *, reason: str = "stopped") -> None:
        """Stop the run's Ray job and wait until its gang is gone (workers ended, placement group removed)."""
        rd = self.run_dir(run_id)
        info = self.jobs.info(run_id)
        if info is None or info.terminal:
            return
        if rd.path.exists():
            rd.mark("stop", reason=reason)
        self.jobs.stop(run_id)
        info = self.jobs.wait_terminal(run_id, timeout_s=30)
        if info is not None and not info.terminal:
            raise BackendError(f"run {run_id} did not stop within 30s (Ray job status {info.status})")
        if info is not None and info.job_id:
            self._wait_gang_released(info.job_id, timeout_s=30)

    def _wait_gang_released(self, ray_job_id: str, timeout_s: float) -> None:
        """Wait until no placement group and no (non-detached) actor of the Ray job is left."""
        deadline = time.monotonic() + timeout_s
        while True:
            pgs = [pg for pg in self._list("placement_groups", [("creator_job_id", "=", ray_job_id)]) if pg.state != "REMOVED"]
            # Detached helpers (Ray Train's PlacementGroupCleaner) outlive the job by design.
            actors = [a for a in self._list("actors", [("job_id", "=", ray_job_id)]) if a.state != "DEAD" and not getattr(a, "is_detached", False)]
            if not pgs and not actors:
                return
            if time.monotonic() > deadline:
                raise BackendError(f"the gang of Ray job {ray_job_id} was not released within {timeout_s:.0f}s: {len(pgs)} placement groups, {len(actors)} actors left")
            time.sleep(0.25)

    def _dead_gang_hosts(self, node_ids: list[str]) -> list[str]:
        """Hosts among ``node_ids`` that are dead: GCS says so, or the host's raylet process is gone."""
        st = self._state or {}
        by_node = {h.get("node_id"): name for name, h in st.get("hosts", {}).items()}
        dead = []
        gcs_dead = {n.node_id: (n.labels or {}).get(LABEL_HOST) for n in self._nodes() if n.state != "ALIVE"}
        for nid in node_ids:
            if nid in gcs_dead:
                dead.append(gcs_dead[nid] or nid)
            elif nid in by_node and not self._host_alive(by_node[nid]):
                dead.append(by_node[nid])
        return dead

    def run_status(self, run_id: str) -> RunStatus | None:
        self._maybe_tick()
        rd = self.run_dir(run_id)
        final = rd.marked("final")
        if final:
            return _status_from_dict(final)
        req = rd.request()
        st = rd.status()
        if req is None:
            info = self.jobs.info(run_id)
            if info is None:
                return None
            return RunStatus(run_id=run_id, state=_JOB_STATE[info.status], message=info.message, started_at=info.start_time,
                             finished_at=info.end_time, exit_code=info.driver_exit_code)
        if st.get("kind") == "infeasible":
            return self._finish(rd, RunStatus(run_id=run_id, state=RunState.FAILED, message=st.get("error", ""), finished_at=st.get("finished_at")))
        if not rd.submitted():
            return None  # launch never completed: the controller may launch it again
        try:
            info = self.jobs.info(run_id)
        except BackendError:
            if self.info() is None:
                return RunStatus(run_id=run_id, state=RunState.LOST, message="the local Ray cluster is down")
            raise
        workers = rd.workers()
        node_ids = tuple(st.get("node_ids") or [w["node_id"] for w in workers])
        all_up = (st.get("phase") in ("running", "succeeded", "failed") and st.get("started_at") is not None) or (
            bool(req.get("train_app")) and len(workers) >= req["workers"]
        )
        started_at = st.get("started_at") or (max(w["t"] for w in workers) if all_up and workers else None)
        notices, gang_hosts = self.notices_for(node_ids)
        common = {
            "notices": notices,
            "hosts": gang_hosts,
            "run_id": run_id,
            "started_at": started_at,
            "node_ids": node_ids,
            "last_checkpoint_step": latest_checkpoint_step(req.get("checkpoint_dir")),
            "resumed_from_step": st.get("resumed_from_step"),
        }
        if info is None:
            # The job vanished: the cluster went down (and maybe up again) under the run.
            if st.get("phase") == "succeeded":
                return self._finish(rd, RunStatus(state=RunState.SUCCEEDED, finished_at=st.get("finished_at"), **common))
            return self._finish(rd, RunStatus(state=RunState.LOST, message="the run's Ray job is gone (the local cluster was restarted)", **common))
        lost = rd.marked("lost")
        if lost is None and info.status != "SUCCEEDED" and node_ids:
            dead = self._dead_gang_hosts(list(node_ids))
            if dead and (not info.terminal or info.status == "FAILED"):
                rd.mark("lost", hosts=dead, message=f"host(s) {', '.join(dead)} of the gang died")
                lost = rd.marked("lost")
                if not info.terminal:
                    self.jobs.stop(run_id)
                    info = self.jobs.wait_terminal(run_id, timeout_s=30) or info
                if info.job_id:
                    self._wait_gang_released(info.job_id, timeout_s=30)
        if lost is not None:
            if not info.terminal:
                self.jobs.stop(run_id)
                return RunStatus(state=RunState.LOST, message=lost.get("message", ""), **common)
            return self._finish(rd, RunStatus(state=RunState.LOST, message=lost.get("message", ""), finished_at=info.end_time, **common))
        stockout = rd.marked("stockout")
        if stockout is not None:
            # The pool's mode answered "no capacity" now (non-queued DWS flex-start in a stockout).
            if not info.terminal:
                self.jobs.stop(run_id)
                return RunStatus(state=RunState.STOCKOUT, message=stockout.get("message", ""), **common)
            return self._finish(rd, RunStatus(state=RunState.STOCKOUT, message=stockout.get("message", ""), finished_at=info.end_time, **common))
        stop = rd.marked("stop")
        if info.terminal:
            if stop is not None and info.status != "SUCCEEDED":
                return self._finish(rd, RunStatus(state=RunState.STOPPED, message=stop.get("reason", "stopped"), finished_at=info.end_time, **common))
            # the entrypoint's own exit code (the driver, rayfleet.train.entrypoint, exits with it)
            code = st.get("exit_code") if st.get("exit_code") is not None else info.driver_exit_code
            ended = {"finished_at": info.end_time, "exit_code": code, **common}
            if info.status == "SUCCEEDED":
                return self._finish(rd, RunStatus(state=RunState.SUCCEEDED, message=info.message, **ended))
            if info.status == "STOPPED":
                return self._finish(rd, RunStatus(state=RunState.STOPPED, message=info.message or "stopped through the Ray Jobs API", **ended))
            error = st.get("error") or info.message or "the run failed"
            return self._finish(rd, RunStatus(state=RunState.FAILED, message=error, **ended))
        # Still going. (maxRunDuration is the controller's: it stops the run, see server/transitions.py.)
        if all_up:
            return RunStatus(state=RunState.RUNNING, message="", **common)
        waiting = st.get("message") or "waiting for the driver to start"
        return RunStatus(state=RunState.PENDING, message=waiting, **common)

    def _finish(self, rd: RunDir, status: RunStatus) -> RunStatus:
        """Persist a terminal status: later calls return it unchanged."""
        if rd.path.exists():
            rd.mark("final", **_status_to_dict(status))
        return status

    def logs(self, run_id: str) -> str:
        rd = self.run_dir(run_id)
        st = rd.status()
        if st.get("kind") == "infeasible":
            return st.get("error", "") + "\n"
        if self._current() is None:
            return ""
        return self.jobs.logs(run_id)

    def upload_package(self, uri: str, data: bytes) -> None:
        """Put a runtime_env package (``gcs://_ray_pkg_<hash>.zip``) into the cluster's GCS through
        its dashboard, as ``ray job submit --working-dir`` would have done against Ray directly."""
        import httpx

        protocol, _, name = uri.partition("://")
        if protocol != "gcs" or not name or "/" in name:
            raise BackendError(f"cannot upload package {uri!r}: expected gcs://<name>")
        base = self.jobs.dashboard_url
        headers = self.auth_headers()
        exists = httpx.get(f"{base}/api/packages/{protocol}/{name}", headers=headers, timeout=60)
        if exists.status_code == 200:
            return
        resp = httpx.put(f"{base}/api/packages/{protocol}/{name}", content=data, headers=headers, timeout=300)
        if resp.status_code != 200:
            raise BackendError(f"uploading {uri} to the local cluster failed: {resp.status_code} {resp.text[:300]}")

    def list_runs(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "request.json").exists())


# ---------------------------------------------------------------------- helpers

_JOB_STATE = {
    "PENDING": RunState.PENDING,
    "RUNNING": RunState.RUNNING,
    "SUCCEEDED": RunState.SUCCEEDED,
    "FAILED": RunState.FAILED,
    "STOPPED": RunState.STOPPED,
}


def _status_to_dict(s: RunStatus) -> dict[str, Any]:
    return {
        "run_id": s.run_id,
        "state": s.state.value,
        "message": s.message,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "last_checkpoint_step": s.last_checkpoint_step,
        "resumed_from_step": s.resumed_from_step,
        "node_ids": list(s.node_ids),
        "hosts": list(s.hosts),
        "exit_code": s.exit_code,
    }


def _status_from_dict(d: dict[str, Any]) -> RunStatus:
    return RunStatus(
        run_id=d["run_id"],
        state=RunState(d["state"]),
        message=d.get("message", ""),
        started_at=d.get("started_at"),
        finished_at=d.get("finished_at"),
        last_checkpoint_step=d.get("last_checkpoint_step"),
        resumed_from_step=d.get("resumed_from_step"),
        node_ids=tuple(d.get("node_ids") or ()),
        hosts=tuple(d.get("hosts") or ()),
        exit_code=d.get("exit_code"),
    )
