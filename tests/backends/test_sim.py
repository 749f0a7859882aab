"""The simulated backend on its own: every scripted behaviour, on a fake clock, no Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayfleet.api import Service, TrainJob
from rayfleet.backends import make_backend
from rayfleet.backends.base import LaunchRequest, RunState
from rayfleet.backends.sim import SimBackend, load_scenario, parse_scenario
from rayfleet.config import load_config
from rayfleet.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config([ROOT / "cluster_configs" / "local.yaml"])
T0 = 1000.0


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_sim(clock: Clock, **kw) -> SimBackend:
    """Every pool of the local config with all its hosts up (pools start at minReplicas by default)."""
    sim = SimBackend({p: CONFIG.pools[p].spec for p in CONFIG.pools}, clock=clock, **kw)
    for p in CONFIG.pools:
        sim.pool(p).initial_hosts(CONFIG.pools[p].spec.max_hosts)
    sim.up()
    return sim


def request(name: str, pool: str = "h100", *, attempt: int = 1, workers: int = 1, resources=None, strategy=None, max_run=None) -> LaunchRequest:
    gang = {"workers": workers, "resourcesPerWorker": resources or {"nvidia.com/gpu": 8, "cpu": 16}}
    if strategy:
        gang["placementStrategy"] = strategy
    spec = {"entrypoint": "python train.py", "queue": "team-a", "gang": gang}
    if max_run:
        spec["maxRunDuration"] = max_run
    job = TrainJob.model_validate({"metadata": {"name": name}, "spec": spec})
    return LaunchRequest.for_job(job, pool, CONFIG.pools[pool].spec, attempt=attempt, checkpoint_dir=None)


def test_run_succeeds_after_its_runtime_and_frees_its_gang():
    clock = Clock()
    sim = make_sim(clock)
    sim.script_run("a", runtime=100)
    sim.launch(request("a"))
    st = sim.run_status("a-1")
    assert st.state == RunState.RUNNING and st.started_at == T0 and len(st.node_ids) == 1
    assert sim.capacity()["h100"].free_hosts == 1
    clock.t = T0 + 99.5
    assert sim.run_status("a-1").state == RunState.RUNNING
    clock.t = T0 + 100
    st = sim.run_status("a-1")
    assert st.state == RunState.SUCCEEDED and st.finished_at == T0 + 100
    assert sim.capacity()["h100"].free_hosts == 2
    assert sim.launch_count("a") == 1 and sim.list_runs() == ["a-1"]


def test_launch_is_idempotent_per_run_id():
    sim = make_sim(Clock())
    assert sim.launch(request("a")) == "a-1"
    assert sim.launch(request("a")) == "a-1"
    assert sim.launch_count("a") == 1
    assert sim.run_status("nope-1") is None


def test_gang_that_does_not_fit_stays_pending_until_hosts_free_up():
    clock = Clock()
    sim = make_sim(clock)
    sim.script_run("big", runtime=50)
    sim.script_run("other", runtime=10)
    sim.launch(request("other"))
    sim.launch(request("big", workers=2))  # needs both h100 hosts
    assert sim.run_status("big-1").state == RunState.PENDING
    clock.t = T0 + 10
    assert sim.run_status("other-1").state == RunState.SUCCEEDED
    st = sim.run_status("big-1")
    assert st.state == RunState.RUNNING and st.started_at == T0 + 10 and len(set(st.node_ids)) == 2


def test_infeasible_gang_fails_at_once_naming_the_reason():
    sim = make_sim(Clock())
    sim.launch(request("huge", workers=3))
    st = sim.run_status("huge-1")
    assert st.state == RunState.FAILED and "gang cannot be placed" in st.message and "2 hosts" in st.message


def test_strict_pack_and_partial_hosts():
    clock = Clock()
    sim = make_sim(clock)
    # 4 GPUs a worker: two workers fill one host under STRICT_PACK
    sim.launch(request("p", workers=2, resources={"nvidia.com/gpu": 4}, strategy="STRICT_PACK"))
    st = sim.run_status("p-1")
    assert st.state == RunState.RUNNING and len(set(st.node_ids)) == 1
    sim.launch(request("q", workers=2, resources={"nvidia.com/gpu": 4}, strategy="STRICT_SPREAD"))
    assert sim.run_status("q-1").state == RunState.PENDING  # one empty host left, spread needs two
    sim.launch(request("r", resources={"nvidia.com/gpu": 2}))
    assert sim.capacity()["h100"].free_hosts == 0


def test_stop_frees_the_gang_and_reports_stopped():
    clock = Clock()
    sim = make_sim(clock)
    sim.launch(request("a", workers=2))
    sim.launch(request("b"))
    assert sim.run_status("b-1").state == RunState.PENDING
    clock.t += 5
    sim.stop("a-1", reason="preempted")
    assert sim.run_status("a-1").state == RunState.STOPPED and sim.run_status("a-1").message == "preempted"
    assert sim.run_status("b-1").state == RunState.RUNNING
    sim.stop("a-1")  # no-op on a terminal run
    sim.stop("unknown-1")


def test_scripted_failure_only_on_given_attempts():
    clock = Clock()
    sim = make_sim(clock)
    sim.script_run("f", runtime=100, fail_at=20, fail_attempts=[1], fail_message="CUDA error")
    sim.launch(request("f"))
    clock.t = T0 + 20
    st = sim.run_status("f-1")
    assert st.state == RunState.FAILED and st.message == "CUDA error"
    sim.launch(request("f", attempt=2))
    clock.t = T0 + 120
    assert sim.run_status("f-2").state == RunState.SUCCEEDED


def test_checkpoints_and_resume_after_a_lost_host():
    clock = Clock()
    sim = make_sim(clock)
    sim.script_run("c", runtime=100, checkpoints=[30, 60, 90])
    sim.launch(request("c"))
    host = sim.runs["c-1"].gang.hosts[0].name
    clock.t = T0 + 45
    assert sim.run_status("c-1").last_checkpoint_step == 30
    sim.lose_host(host, at=T0 + 70)
    clock.t = T0 + 71
    st = sim.run_status("c-1")
    assert st.state == RunState.LOST and host in st.message and st.last_checkpoint_step == 60
    assert sim.capacity()["h100"].ready_hosts == 1
    sim.launch(request("c", attempt=2))
    st = sim.run_status("c-2")
    assert st.state == RunState.RUNNING and st.resumed_from_step == 60 and st.node_ids[0] != f"sim-{host}-0"
    clock.t += 40  # 40 steps left after step 60
    assert sim.run_status("c-2").state == RunState.SUCCEEDED
    logs = sim.logs("c-2")
    assert "resumed from step 60" in logs and "step 90: checkpoint saved" in logs and "step 30" not in logs


def test_run_status_is_handed_back_while_unchanged_and_anew_on_each_change():
    """The controller asks for every launched run each pass: an unchanged run gives the same
    status object; a checkpoint, a notice or an end gives a new one."""
    clock = Clock()
    sim = make_sim(clock)
    sim.script_run("u", runtime=100, checkpoint_every=10)
    sim.launch(request("u", "l4-spot", resources={"nvidia.com/gpu": 1}))
    first = sim.run_status("u-1")
    clock.t = T0 + 5
    assert sim.run_status("u-1") is first
    clock.t = T0 + 12
    ckpt = sim.run_status("u-1")
    assert ckpt is not first and ckpt.last_checkpoint_step == 10 and ckpt.state == RunState.RUNNING
    assert sim.run_status("u-1") is ckpt
    sim.reclaim(sim.runs["u-1"].gang.hosts[0].name, at=clock.t, notice=30)
    noticed = sim.run_status("u-1")
    assert noticed is not ckpt and [n.kind.value for n in noticed.notices] == ["reclaim"]
    sim.request_checkpoint("u-1")
    assert sim.run_status("u-1").last_checkpoint_step == 12
    clock.t = T0 + 42
    assert sim.run_status("u-1").state == RunState.LOST


def test_reclaim_with_notice_loses_runs_when_the_notice_runs_out():
    clock = Clock()
    sim = make_sim(clock)
    sim.script_run("s", runtime=1000)
    sim.launch(request("s", "l4-spot", resources={"nvidia.com/gpu": 1}))
    host = sim.runs["s-1"].gang.hosts[0].name
    sim.reclaim(host, at=T0 + 10, notice=30)
    clock.t = T0 + 39
    assert sim.run_status("s-1").state == RunState.RUNNING
    assert sim.capacity()["l4-spot"].free_hosts == 1   # the draining host takes nothing new
    clock.t = T0 + 40
    st = sim.run_status("s-1")
    assert st.state == RunState.LOST and st.finished_at == T0 + 40 and "reclaimed" in st.message


def test_next_event_at_is_the_next_scheduled_event_or_none():
    clock = Clock()
    sim = make_sim(clock)
    assert sim.next_event_at() is None
    sim.script_run("n", runtime=100)
    sim.launch(request("n"))
    host = sim.runs["n-1"].gang.hosts[0].name
    sim.lose_host(host, at=T0 + 500)
    assert sim.run_status("n-1").state == RunState.RUNNING   # applies what is due now
    assert sim.next_event_at() == T0 + 100          # the run's end comes before the host's loss
    clock.t = T0 + 100
    assert sim.run_status("n-1").state == RunState.SUCCEEDED
    assert sim.next_event_at() == T0 + 500
    clock.t = T0 + 500
    sim.capacity()
    assert sim.next_event_at() is None or sim.next_event_at() > T0 + 500


def test_provisioning_delay_and_stockout():
    clock = Clock()
    sim = SimBackend({"l4-spot": CONFIG.pools["l4-spot"].spec}, clock=clock)
    sim.pool("l4-spot").initial_hosts(0).provisioning(delay=60)
    sim.up()
    assert sim.capacity()["l4-spot"].ready_hosts == 0
    sim.pool("l4-spot").stockout(until=T0 + 100)
    sim.launch(request("g", "l4-spot", resources={"nvidia.com/gpu": 1}))
    clock.t = T0 + 150
    assert sim.run_status("g-1").state == RunState.PENDING      # requested at 100, ready at 160
    clock.t = T0 + 160
    st = sim.run_status("g-1")
    assert st.state == RunState.RUNNING and st.started_at == T0 + 160
    assert sim.capacity()["l4-spot"].ready_hosts == 1            # only what the gang needed


def test_lost_host_is_replaced_on_demand():
    clock = Clock()
    sim = SimBackend({"h100": CONFIG.pools["h100"].spec}, clock=clock, provisioning_delay=30)
    sim.up()
    sim.launch(request("a", workers=2))
    sim.lose_host("h100-0")
    assert sim.run_status("a-1").state == RunState.LOST
    sim.launch(request("a", attempt=2, workers=2))
    clock.t = T0 + 29
    assert sim.run_status("a-2").state == RunState.PENDING
    clock.t = T0 + 30
    assert sim.run_status("a-2").state == RunState.RUNNING


def test_multi_host_tpu_gang_takes_one_slice():
    sim = make_sim(Clock())
    sim.launch(request("t", "tpu-v5e", workers=2, resources={"google.com/tpu": 4}))
    st = sim.run_status("t-1")
    assert st.state == RunState.RUNNING and sorted(st.node_ids) == ["sim-tpu-v5e-0-0-0", "sim-tpu-v5e-0-1-0"]


def test_max_run_duration_is_an_in_cluster_deadline_as_on_kuberay():
    clock = Clock()
    sim = make_sim(clock)
    sim.script_run("d", runtime=100)
    sim.launch(request("d", max_run=20))
    clock.t = T0 + 20
    st = sim.run_status("d-1")
    assert st.state == RunState.DEADLINE_EXCEEDED and "activeDeadlineSeconds" in st.message


def test_runtime_env_package_must_be_uploaded():
    sim = make_sim(Clock())
    req = request("w")
    req = LaunchRequest(**{**req.__dict__, "runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"}})
    sim.launch(req)
    assert "never uploaded" in sim.run_status("w-1").message
    sim.upload_package("gcs://_ray_pkg_abc.zip", b"zip")
    sim.launch(LaunchRequest(**{**req.__dict__, "attempt": 2}))
    assert sim.run_status("w-2").state == RunState.RUNNING


def _history(seed: int) -> list:
    clock = Clock()
    sim = SimBackend({"l4-spot": CONFIG.pools["l4-spot"].spec}, clock=clock, seed=seed, provisioning_delay=10, provisioning_jitter=50)
    sim.pool("l4-spot").initial_hosts(0)
    sim.up()
    sim.script_run("j", runtime=30, runtime_jitter=20)
    for i in range(2):
        sim.launch(request(f"j{i}", "l4-spot", resources={"nvidia.com/gpu": 1}))
    out = []
    for _ in range(30):
        clock.t += 5
        out.append(tuple((r, sim.run_status(r).state.value, sim.run_status(r).started_at) for r in sim.list_runs()))
    return out


def test_deterministic_for_a_seed():
    assert _history(7) == _history(7)
    assert _history(7) != _history(8)


def test_service_groups_become_ready_and_scale():
    clock = Clock()
    sim = make_sim(clock)
    svc = Service.model_validate({"metadata": {"name": "chat"}, "spec": {
        "importPath": "serve_apps.echo:app", "queue": "team-c",
        "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"nvidia.com/gpu": 1}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}})
    sim.script_service("chat", ready_after=10, load=[(T0 + 50, 3)])
    spec = CONFIG.pools["l4-spot"].spec
    sim.deploy_service(svc, "l4-spot", spec, 1)
    st = sim.service_status("chat")
    assert (st.replicas_target, st.replicas_running, st.replicas_wanted) == (1, 0, 1) and "starting" in st.message
    clock.t = T0 + 10
    assert sim.service_status("chat").replicas_running == 1
    clock.t = T0 + 50
    assert sim.service_status("chat").replicas_wanted == 3
    sim.deploy_service(svc, "l4-spot", spec, 3)  # only 2 hosts in the pool
    clock.t = T0 + 60
    st = sim.service_status("chat")
    assert (st.replicas_target, st.replicas_running) == (3, 2) and "waiting for hosts" in st.message
    sim.deploy_service(svc, "l4-spot", spec, 1)
    assert sim.service_status("chat").replicas_running == 1 and sim.capacity()["l4-spot"].free_hosts == 1
    sim.delete_service("chat")
    assert sim.service_status("chat") is None and sim.capacity()["l4-spot"].free_hosts == 2


SCENARIO = {
    "seed": 3,
    "defaults": {"run": {"runtime": 40}},
    "pools": {"l4-spot": {"initialHosts": 1, "provisioningDelay": 5, "stockouts": [{"from": 0, "until": 20}]}},
    "hosts": [{"reclaim": "l4-spot-0", "at": 10, "notice": 30}],
    "runs": [{"job": "train-*", "runtime": 100, "checkpointEvery": 25}],
}


def test_scenario_file_scripts_the_sim(tmp_path):
    import yaml

    path = tmp_path / "scn.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    clock = Clock()
    sim = SimBackend({p: CONFIG.pools[p].spec for p in CONFIG.pools}, clock=clock, scenario=load_scenario(path))
    sim.up()
    assert sim.capacity()["l4-spot"].ready_hosts == 1
    sim.launch(request("train-1", "l4-spot", resources={"nvidia.com/gpu": 1}))
    sim.launch(request("other", "h100"))
    clock.t = T0 + 40
    st = sim.run_status("train-1-1")
    assert st.state == RunState.LOST and st.last_checkpoint_step == 25
    assert sim.run_status("other-1").state == RunState.SUCCEEDED   # the default runtime: 40s


@pytest.mark.parametrize("change, field", [
    ({"seeed": 1}, "seeed"),
    ({"pools": {"l4-spot": {"initialHosts": -1}}}, "pools.l4-spot.initialHosts"),
    ({"pools": {"l4-spot": {"stockouts": [{"from": 30, "until": 20}]}}}, "pools.l4-spot.stockouts.0.until"),
    ({"hosts": [{"at": 1}]}, "hosts.0.lose"),
    ({"runs": [{"job": "x", "runtime": "soon"}]}, "runs.0.runtime"),
    ({"runs": [{"job": "x", "failAttempts": [0]}]}, "runs.0.failAttempts"),
])
def test_bad_scenario_names_the_field(change, field):
    with pytest.raises(SpecError) as e:
        parse_scenario({**SCENARIO, **change}, file="scn.yaml")
    assert field in [p.field for p in e.value.problems], e.value.problems


def test_scenario_naming_unknown_pool_or_host_is_refused():
    scn = parse_scenario({"pools": {"nope": {}}, "hosts": [{"lose": "h100-9", "at": 1}]})
    with pytest.raises(SpecError) as e:
        SimBackend({p: CONFIG.pools[p].spec for p in CONFIG.pools}, clock=Clock(), scenario=scn)
    assert [p.field for p in e.value.problems] == ["pools.nope", "hosts.0.lose"]


@pytest.mark.slow  # runs the CLI as a process
def test_bad_scenario_in_config_is_exit_2(tmp_path):
    (tmp_path / "scn.yaml").write_text("hosts: [{at: 1, lose: h100-0, notice: -1}]\n")
    text = (ROOT / "cluster_configs" / "local.yaml").read_text().replace("  backend: local\n", f"  backend: sim\n  sim: {{scenario: {tmp_path / 'scn.yaml'}}}\n", 1)
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(text)
    with pytest.raises(SpecError):
        make_backend(load_config([cfg]), tmp_path)
    # the CLI checks the scenario before it starts anything: exit 2, the field named
    env = {**os.environ, "RAYFLEET_HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "rayfleet.cli", "up", "--config", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "hosts.0.notice" in result.stderr, result.stderr
    result = subprocess.run([sys.executable, "-m", "rayfleet.cli", "up", "--backend", "simulated"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--backend" in result.stderr, result.stderr


def test_scenario_services_follow_their_load_steps():
    clock = Clock()
    scn = parse_scenario({"services": [{"name": "ch*", "readyAfter": 5, "load": [{"at": 100, "replicas": 3}, {"at": 0, "replicas": 2}]}]})
    sim = SimBackend({p: CONFIG.pools[p].spec for p in CONFIG.pools}, clock=clock, scenario=scn)
    sim.up()
    clock.t = T0 + 10
    svc = Service.model_validate({"metadata": {"name": "chat"}, "spec": {
        "importPath": "serve_apps.echo:app", "queue": "team-c", "replicaGroup": {"resourcesPerHost": {"cpu": 1}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 5}}})
    sim.deploy_service(svc, "cpu", CONFIG.pools["cpu"].spec, 1)
    assert sim.service_status("chat").replicas_wanted == 2
    clock.t = T0 + 100
    st = sim.service_status("chat")
    assert st.replicas_wanted == 3 and st.replicas_running == 1 and "load asks for 3 replicas, 1 allowed" in st.message


def test_provisioning_asks_for_the_hosts_pending_gangs_need():
    clock = Clock()
    spec = CONFIG.pools["cpu"].spec.model_copy(update={"max_replicas": 10})
    sim = SimBackend({"cpu": spec}, clock=clock, provisioning_delay=10)
    sim.pool("cpu").initial_hosts(0)
    sim.up()
    for i in range(12):   # 2 of a host's 8 cores each: 4 a host, 3 hosts
        sim.launch(request(f"c{i}", "cpu", resources={"cpu": 2}))
    assert sim.pools["cpu"].provisioning == 3
    clock.t = T0 + 10
    assert all(sim.run_status(f"c{i}-1").state == RunState.RUNNING for i in range(12))
    assert sim.capacity()["cpu"].ready_hosts == 3 and sim.capacity()["cpu"].free_hosts == 0
