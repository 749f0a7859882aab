"""The local backend.

Fast tests (no Ray): the hosts local.yaml maps to and their labels/resources, the memory check,
gang placement and feasibility, the process finder. Slow tests (marked ``slow``): bring up
``cluster_configs/local.yaml`` itself as real Ray processes (token auth), check capacity per pool
and every node's labels and resources, re-attach from another process, kill and repair a host,
run an entry-point gang, and ``down`` with no process of the cluster left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from rayfleet.api import Accelerator, PlacementStrategy, PoolSpec
from rayfleet.api.labels import LABEL_HOST, LABEL_POOL, node_labels, node_resources
from rayfleet.backends import local_procs
from rayfleet.backends.base import LaunchRequest, RunState
from rayfleet.backends.local import LocalBackend, memory_needed, plan_hosts
from rayfleet.backends.placement import default_strategy, feasibility_problems, plan_gang, worker_resources
from rayfleet.config import load_config
from rayfleet.errors import CapacityError, ConfigError

GiB = 2**30



@pytest.fixture(scope="module")
def local_cfg(local_config_path):
    return load_config([local_config_path])


# ---------------------------------------------------------------- hosts of local.yaml


def test_local_yaml_hosts_carry_the_labels_and_resources_of_their_gke_nodes(local_cfg, tmp_path):
    b = LocalBackend.from_config(local_cfg, tmp_path)
    assert list(b.host_plans) == ["cpu-0", "h100-0", "h100-1", "l4-spot-0", "l4-spot-1", "tpu-v5e-0-0", "tpu-v5e-0-1"]
    for h in b.host_plans.values():
        spec = local_cfg.pools[h.pool].spec
        assert h.labels == node_labels(h.pool, spec, slice_index=h.slice_index, host_index=h.host_index)
        assert h.resources == node_resources(spec, host_index=h.host_index)
        assert h.labels[LABEL_HOST] == h.name
    assert b.host_plans["h100-0"].num_gpus == 8 and b.host_plans["l4-spot-1"].num_gpus == 1
    assert b.host_plans["cpu-0"].num_gpus == 0 and b.host_plans["cpu-0"].resources == {}
    assert b.host_plans["tpu-v5e-0-0"].resources == {"accelerator_type:TPU-V5LITEPOD": 1, "TPU": 4, "TPU-v5litepod-8-head": 1}
    assert b.host_plans["tpu-v5e-0-1"].resources == {"accelerator_type:TPU-V5LITEPOD": 1, "TPU": 4}
    assert b.object_store_memory == 96 * 2**20 and b.head_cpus == 4
    assert b.host_cpus == 1  # cpusPerHost 0.5 rounded up: `ray start` takes whole CPUs


def test_a_cluster_the_machine_cannot_hold_is_refused_with_the_numbers(local_cfg, tmp_path):
    b = LocalBackend.from_config(local_cfg, tmp_path)
    need = memory_needed(7, 96 * 2**20)
    with pytest.raises(CapacityError) as e:
        b.check_memory(available=need - 1)
    msg = str(e.value)
    assert "7 simulated hosts" in msg and f"{need / 2**20:,.0f} MiB" in msg and "available" in msg
    b.check_memory(available=need)
    assert b.memory_plan()["needed"] == need


def test_cluster_processes_get_explicit_auth_marker_and_the_clusters_python_on_path(local_cfg, tmp_path):
    b = LocalBackend.from_config(local_cfg, tmp_path, temp_dir="/tmp/rf-train-env")
    env = b._process_env()
    assert env["RAY_AUTH_MODE"] == "disabled" and env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env[local_procs.ENV_MARKER] == "/tmp/rf-train-env"
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert "RAY_ADDRESS" not in env


def test_temp_dir_must_be_short_enough_for_ray_sockets(local_cfg, tmp_path):
    with pytest.raises(ConfigError):
        LocalBackend.from_config(local_cfg, tmp_path, temp_dir="/tmp/" + "x" * 60)


def test_capacity_of_a_cluster_that_is_down(local_cfg, tmp_path):
    b = LocalBackend.from_config(local_cfg, tmp_path)
    assert b.info() is None
    cap = b.capacity()
    assert {p: (c.hosts, c.ready_hosts, c.free_hosts) for p, c in cap.items()} == {
        "cpu": (1, 0, 0), "h100": (2, 0, 0), "l4-spot": (2, 0, 0), "tpu-v5e": (2, 0, 0),
    }


def test_plan_hosts_spans_every_slice_of_a_tpu_pool():
    spec = PoolSpec(accelerator=Accelerator.TPU_V5E, accelerators_per_host=4, machine_type="ct5lp-hightpu-4t", tpu_topology="2x4", max_replicas=2)
    hosts = plan_hosts({"tpu": spec})
    assert [h.name for h in hosts] == ["tpu-0-0", "tpu-0-1", "tpu-1-0", "tpu-1-1"]
    assert [("TPU-v5litepod-8-head" in h.resources) for h in hosts] == [True, False, True, False]


# ---------------------------------------------------------------- placement

H100 = PoolSpec(accelerator=Accelerator.H100, accelerators_per_host=8, machine_type="a3-highgpu-8g", cpu_per_host=200, max_replicas=2)
V5E = PoolSpec(accelerator=Accelerator.TPU_V5E, accelerators_per_host=4, machine_type="ct5lp-hightpu-4t", tpu_topology="2x4", cpu_per_host=112, max_replicas=2)
CPU_POOL = PoolSpec(machine_type="n2-standard-8", cpu_per_host=8, max_replicas=1)


def test_worker_bundles_map_kubernetes_resources_to_ray():
    assert worker_resources({"cpu": 20000, "nvidia.com/gpu": 4}, H100, host_cpus=1) == {"CPU": 0.1, "GPU": 4.0, "accelerator_type:H100": 0.5}
    assert worker_resources({"google.com/tpu": 4}, V5E, host_cpus=1) == {"TPU": 4.0, "accelerator_type:TPU-V5LITEPOD": 1.0}
    # Train gangs cannot ask Ray Train for TPU without use_tpu; the host is reserved by accelerator_type.
    assert worker_resources({"google.com/tpu": 4}, V5E, host_cpus=1, for_train=True) == {"accelerator_type:TPU-V5LITEPOD": 1.0}
    assert worker_resources({"cpu": 1000}, CPU_POOL, host_cpus=1) == {"CPU": 0.125}
    assert worker_resources({}, CPU_POOL, host_cpus=1) == {"CPU": 0.01}


def test_default_strategy_is_strict_spread_for_multi_host_tpu_else_pack():
    assert default_strategy(V5E, None) == PlacementStrategy.STRICT_SPREAD
    assert default_strategy(H100, None) == PlacementStrategy.PACK
    assert default_strategy(H100, "SPREAD") == PlacementStrategy.SPREAD


def test_gang_plan_pins_every_bundle_to_the_pool_and_tpu_slice():
    plan = plan_gang(run_id="j-1", pool="tpu", spec=V5E, workers=2, resources_per_worker={"google.com/tpu": 4}, strategy=None, host_cpus=1, tpu_slice="tpu-1")
    assert plan.label_selectors == [{LABEL_POOL: "tpu", "rayfleet.io/tpu-slice": "tpu-1"}] * 2
    assert plan.strategy == "STRICT_SPREAD" and not plan.use_gpu
    assert len(plan.bundles()) == 2
    assert "slice 'tpu-1'" in plan.describe()
    gpu = plan_gang(run_id="j-1", pool="h100", spec=H100, workers=2, resources_per_worker={"nvidia.com/gpu": 8}, strategy=None, host_cpus=1)
    assert gpu.use_gpu and gpu.train_resources["GPU"] == 8.0 and gpu.label_selectors == [{LABEL_POOL: "h100"}] * 2
    assert type(gpu).from_dict(json.loads(json.dumps(gpu.to_dict()))) == gpu


@pytest.mark.parametrize(
    ("spec", "workers", "res", "strategy", "problem"),
    [
        (H100, 1, {"nvidia.com/gpu": 16}, None, "asks for 16 nvidia.com/gpu but a host of pool 'p' offers 8"),
        (H100, 3, {"nvidia.com/gpu": 8}, "STRICT_SPREAD", "STRICT_SPREAD puts each of the 3 workers on its own host, but pool 'p' (2 hosts) has 2"),
        (H100, 3, {"nvidia.com/gpu": 4}, "STRICT_PACK", "STRICT_PACK puts all 3 workers on one host, but a host of pool 'p' holds 2"),
        (H100, 5, {"nvidia.com/gpu": 4}, None, "5 workers need 3 hosts at 2 per host, but pool 'p' (2 hosts) has 2"),
        (V5E, 3, {"google.com/tpu": 4}, None, "but one slice of pool 'p' (2 hosts) has 2"),
    ],
)
def test_gangs_that_can_never_fit_are_named(spec, workers, res, strategy, problem):
    problems = feasibility_problems("p", spec, workers, res, strategy)
    assert any(problem in p for p in problems), problems


def test_gangs_that_fit():
    assert feasibility_problems("p", H100, 4, {"nvidia.com/gpu": 4}, None) == []
    assert feasibility_problems("p", V5E, 2, {"google.com/tpu": 4}, None) == []
    assert feasibility_problems("p", CPU_POOL, 8, {"cpu": 1000}, None) == []


# ---------------------------------------------------------------- processes


@pytest.mark.slow  # starts sh and sleep processes
def test_cluster_processes_are_found_by_marker_and_descent_only(tmp_path):
    marker = f"/tmp/rf-train-marker-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, local_procs.ENV_MARKER: marker}
    ours = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], env=env)
    other = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        found: set[int] = set()
        while time.monotonic() < deadline and len(found) < 3:
            found = local_procs.cluster_pids(marker)
            time.sleep(0.05)
        assert ours.pid in found and len(found) == 3  # the shell and both sleeps
        assert other.pid not in found
        assert local_procs.kill_pids(found, grace_s=1) == set()
        assert local_procs.cluster_pids(marker) == set()
        assert other.poll() is None
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def test_listening_sockets_are_read_from_proc_with_their_addresses():
    import socket

    socks = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family)
        s.bind((addr, 0))
        s.listen()
        socks.append(s)
    try:
        found = local_procs.listening_sockets([os.getpid()])
        want = {(os.getpid(), a, s.getsockname()[1]) for s, a in zip(socks, ("127.0.0.1", "0.0.0.0", "::"), strict=True)}
        assert want <= set(found)
        assert [local_procs.is_loopback(a) for a in ("127.0.0.1", "0.0.0.0", "::", "::1")] == [True, False, False, True]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow  # starts a process
def test_cluster_processes_keep_node_ip_127_0_0_1(local_cfg, tmp_path):
    """Ray swaps a loopback address for the routable IP; the cluster's site hook keeps it."""
    env = LocalBackend.from_config(local_cfg, tmp_path)._process_env()
    site = env["PYTHONPATH"].split(os.pathsep)[0]
    assert site.endswith("ray_site") and os.path.exists(os.path.join(site, "sitecustomize.py"))
    code = ("import ray._private.services as s; "
            "print(s.resolve_ip_for_localhost('127.0.0.1'), s.resolve_ip_for_localhost('localhost'), s.resolve_ip_for_localhost('10.1.2.3'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["127.0.0.1", "localhost", "10.1.2.3"]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
@pytest.mark.slow  # starts a process
def test_the_ray_user_exists_unprivileged_and_must_be_able_to_run_the_python(tmp_path):
    from rayfleet.backends import local_user
    from rayfleet.errors import BackendError

    uid, gid = local_user.ensure_user(local_user.RAY_USER)
    assert uid != 0 and local_user.ensure_user(local_user.RAY_USER) == (uid, gid)  # made once
    d = tmp_path / "ray-home"
    (d / "runs").mkdir(parents=True)
    (d / "runs" / "request.json").write_text("{}")
    local_user.give(d, uid, gid)
    assert {p.stat().st_uid for p in [d, *d.rglob("*")]} == {uid}
    # A Python without Ray (the system's, outside the virtualenv) is refused, naming the user.
    base = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.path.exists(base):
        pytest.skip(f"no {base}")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ""}
    with pytest.raises(BackendError) as e:
        local_user.check_can_run(base, env, uid, gid, user=local_user.RAY_USER)
    assert "rayfleet-ray" in e.value.message and "not importable" in e.value.message
    # The interpreter the product gives the Ray user runs, and finds Ray and rayfleet.
    python = local_user.python_for((uid, gid))
    local_user.check_can_run(python, {"PATH": "/usr/bin:/bin"}, uid, gid, user=local_user.RAY_USER)


# ---------------------------------------------------------------- local.yaml on real Ray


@pytest.fixture(scope="module")
def yaml_backend(local_cfg, tmp_path_factory):
    data = tmp_path_factory.mktemp("rf-local-yaml")
    temp_dir = f"/tmp/rf-train-y{uuid.uuid4().hex[:8]}"
    b = LocalBackend.from_config(local_cfg, data / "data", temp_dir=temp_dir, auth_mode="token", placement_timeout_s=60)
    b.start_timeout_s = 300.0  # another cluster may be starting beside it (make test runs two lanes)
    t0 = time.monotonic()
    b.up()
    b.up_seconds = time.monotonic() - t0
    try:
        yield b
    finally:
        b.down()
        subprocess.run(["rm", "-rf", temp_dir], check=False)


@pytest.mark.slow
def test_local_yaml_up_capacity_labels_and_resources(yaml_backend, local_cfg):
    b = yaml_backend
    info = b.info()
    assert info is not None and info.backend == "local" and info.dashboard_url.startswith("http://127.0.0.1:")
    assert info.serve_url == f"http://127.0.0.1:{b.serve_port}" and info.address == b.address
    cap = b.capacity()
    assert {p: (c.hosts, c.ready_hosts, c.free_hosts) for p, c in cap.items()} == {
        "cpu": (1, 1, 1), "h100": (2, 2, 2), "l4-spot": (2, 2, 2), "tpu-v5e": (2, 2, 2),
    }
    nodes = [n for n in b.nodes() if n["alive"]]
    assert len(nodes) == 8 and sum(n["head"] for n in nodes) == 1
    for n in nodes:
        if n["head"]:
            assert LABEL_POOL not in n["labels"]
            continue
        h = b.host_plans[n["host"]]
        spec = local_cfg.pools[h.pool].spec
        for k, v in node_labels(h.pool, spec, slice_index=h.slice_index, host_index=h.host_index).items():
            assert n["labels"][k] == v
        for k, v in node_resources(spec, host_index=h.host_index).items():
            assert n["resources"][k] == v
        assert n["resources"].get("GPU", 0) == h.num_gpus
        assert n["resources"]["CPU"] == 1
        assert n["resources"]["object_store_memory"] == 96 * 2**20


@pytest.mark.slow
def test_up_is_idempotent_and_another_process_reattaches(yaml_backend, local_cfg):
    b = yaml_backend
    raylets = {name: h["raylet_pid"] for name, h in b._require_up()["hosts"].items()}
    t0 = time.monotonic()
    assert b.up() == b.info()
    assert time.monotonic() - t0 < 10
    code = (
        "import json, sys\n"
        "from rayfleet.backends.local import LocalBackend\n"
        "from rayfleet.config import load_config\n"
        f"b = LocalBackend.from_config(load_config([{str(b_path(local_cfg))!r}]), {str(b.data_dir)!r}, temp_dir={b.temp_dir!r}, auth_mode='token')\n"
        "i = b.up()\n"
        "print(json.dumps({'address': i.address, 'dashboard': i.dashboard_url, 'ready': b.capacity()['h100'].ready_hosts}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"address": b.info().address, "dashboard": b.info().dashboard_url, "ready": 2}
    assert {name: h["raylet_pid"] for name, h in b._require_up()["hosts"].items()} == raylets


def b_path(cfg) -> str:
    return next(iter(cfg.sources.values()))


@pytest.mark.slow
def test_token_auth_guards_the_jobs_api(yaml_backend):
    b = yaml_backend
    url = f"{b.dashboard_url}/api/jobs/"
    assert httpx.get(url, timeout=30).status_code in (401, 403)
    assert httpx.get(url, headers=b.auth_headers(), timeout=30).status_code == 200
    assert b.client_env()["RAY_AUTH_MODE"] == "token" and os.path.exists(b.client_env()["RAY_AUTH_TOKEN_PATH"])
    assert b.auth_headers() == {"Authorization": f"Bearer {b.auth_token()}"}


@pytest.mark.slow
def test_entrypoint_gang_on_the_cpu_pool(yaml_backend):
    b = yaml_backend
    req = LaunchRequest(
        job_id="echo", attempt=1, pool="cpu", pool_spec=b.pools["cpu"], workers=2,
        resources_per_worker={"cpu": 1000}, accelerator=None, placement_strategy=None,
        entrypoint='echo gang=$RAYFLEET_PLACEMENT_GROUP workers=$RAYFLEET_WORKERS; python -c "import ray; print(\'ray\', ray.__version__)"',
    )
    b.launch(req)
    deadline = time.monotonic() + 180
    s = b.run_status("echo-1")
    while not s.state.terminal and time.monotonic() < deadline:
        time.sleep(0.5)
        s = b.run_status("echo-1")
    assert s.state == RunState.SUCCEEDED, b.logs("echo-1")[-3000:]
    assert "gang=rayfleet-echo-1 workers=2" in b.logs("echo-1")
    assert "ray 2.60" in b.logs("echo-1")  # a bare `python` is the cluster's Python
    assert set(s.node_ids) <= b.pool_node_ids("cpu") and len(s.node_ids) == 2  # PACK: both on cpu-0
    assert b.capacity()["cpu"].free_hosts == 1  # the placement group went with the job


def _ray_cli(b: LocalBackend, *args: str, token: str | None) -> subprocess.CompletedProcess:
    """The real ``ray`` CLI against the cluster's own dashboard, with ``token`` (or none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=str(b.data_dir))  # no ~/.ray/auth_token to fall back on
    if token is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    ray = str(Path(sys.executable).with_name("ray"))
    return subprocess.run([ray, *args], capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.slow
def test_ray_job_submit_to_the_clusters_dashboard_needs_the_clusters_token(yaml_backend):
    b = yaml_backend
    submit = ("job", "submit", "--address", b.dashboard_url, "--submission-id")
    for sid, token in (("door-none", None), ("door-wrong", "0" * 64)):
        r = _ray_cli(b, *submit, sid, "--", "echo", "went-around-quota", token=token)
        assert r.returncode != 0, r.stdout + r.stderr
        assert "went-around-quota" not in r.stdout
        assert b.jobs.info(sid) is None  # nothing was submitted
    r = _ray_cli(b, *submit, "door-token", "--", "echo", "through-the-door", token=b.auth_token())
    assert r.returncode == 0, r.stdout + r.stderr  # the door is real: the cluster's token opens it
    assert "through-the-door" in r.stdout
    # its logs need the token too
    assert httpx.get(f"{b.dashboard_url}/api/jobs/door-token/logs", timeout=30).status_code in (401, 403)


@pytest.mark.slow
def test_no_ray_server_of_the_cluster_listens_beyond_loopback(yaml_backend):
    """GCS, raylets, object managers, dashboard, agents, client server, and the driver and
    workers of a running gang: every listening TCP socket of the cluster's processes is on
    127.0.0.1."""
    b = yaml_backend
    req = LaunchRequest(
        job_id="listen", attempt=1, pool="cpu", pool_spec=b.pools["cpu"], workers=1,
        resources_per_worker={"cpu": 1000}, accelerator=None, placement_strategy=None,
        entrypoint="python -c 'import ray, time; ray.init(); time.sleep(60)'",
    )
    b.launch(req)
    deadline = time.monotonic() + 120
    while b.run_status("listen-1").state != RunState.RUNNING:
        assert time.monotonic() < deadline and not b.run_status("listen-1").state.terminal, b.logs("listen-1")[-2000:]
        time.sleep(0.5)
    time.sleep(3)  # the user program's ray.init() has connected
    try:
        st = b._require_up()
        pids = local_procs.cluster_pids(b.temp_dir, st["raylet_pids"])
        socks = local_procs.listening_sockets(pids)
        procs = local_procs.all_procs()
        cmds = {p: procs[p].cmdline[:80] for p, _, _ in socks if p in procs}
        assert any(port == st["gcs_port"] for _, _, port in socks) and any(port == st["dashboard_port"] for _, _, port in socks)
        assert any("ray::" in cmds.get(p, "") or "entrypoint" in cmds.get(p, "") for p, _, _ in socks)  # workers/driver seen
        wide = [(cmds.get(p), addr, port) for p, addr, port in socks if not local_procs.is_loopback(addr)]
        assert wide == []
        assert b.address.startswith("127.0.0.1:")
    finally:
        b.stop("listen-1")


@pytest.mark.slow
def test_kill_host_then_up_repairs_it(yaml_backend):
    b = yaml_backend
    old = b._require_up()["hosts"]["l4-spot-1"]["raylet_pid"]
    b.kill_host("l4-spot-1")
    assert not local_procs.pid_alive(old)
    cap = b.capacity()["l4-spot"]
    assert (cap.ready_hosts, cap.free_hosts) == (1, 1)
    b.up()
    assert b.capacity()["l4-spot"].ready_hosts == 2
    assert b._require_up()["hosts"]["l4-spot-1"]["raylet_pid"] != old


@pytest.mark.slow
def test_down_leaves_no_process_of_the_cluster(yaml_backend):
    b = yaml_backend
    b.down()
    assert b.info() is None
    assert local_procs.cluster_pids(b.temp_dir) == set()
    left = subprocess.run(["pgrep", "-f", b.temp_dir], capture_output=True, text=True)
    assert left.stdout.strip() == ""
    assert all(c.ready_hosts == 0 for c in b.capacity().values())
    b.down()  # idempotent
