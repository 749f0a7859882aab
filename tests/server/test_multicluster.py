"""Several clusters in one platform (backends/cluster_set.py, server/cordons.py), on simulated
clusters and the real controller, store and quota, on a fake clock: placement across clusters, one
quota over all of them, cordon, drain (checkpoint and move, a disruption not a failure), services
moved up-then-down, a cluster that stops answering cordoned on its own and back when it answers,
and ten clusters at once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from rayfleet.api import JobState, Service, TrainJob
from rayfleet.backends import make_cluster_set
from rayfleet.backends.base import run_id_for
from rayfleet.config import load_config
from rayfleet.errors import ConfigError
from rayfleet.server.auth import Principal
from rayfleet.server.cordons import Cordons
from rayfleet.server.main import assemble

ADMIN = Principal(team=None, admin=True, label="admin")
PLATFORM = Path(__file__).with_name("sim_platform.yaml").read_text()
SIM_CLUSTER = "apiVersion: rayfleet.io/v1alpha1\nkind: Cluster\nmetadata: {name: sim}\nspec:\n  backend: sim\n  sim: {seed: 1, defaultRuntime: 60}\n"


def platform(tmp_path: Path, names: list[str], *, failover: str = "") -> Path:
    assert SIM_CLUSTER in PLATFORM
    clusters = "---\n".join(
        f"apiVersion: rayfleet.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {n}}}\nspec:\n  backend: sim\n"
        f"  sim: {{seed: {i + 1}, defaultRuntime: 60}}\n{failover}" for i, n in enumerate(names))
    path = tmp_path / "platform.yaml"
    path.write_text(PLATFORM.replace(SIM_CLUSTER, clusters))
    return path


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


class World:
    def __init__(self, tmp_path: Path, names: list[str], **kw: str):
        self.clock = Clock()
        self.config = load_config([platform(tmp_path, names, **kw)])
        self.set = make_cluster_set(self.config, tmp_path, clock=self.clock)
        self.set.up()
        self.fleet = assemble(self.config, self.set, tmp_path / "data", clock=self.clock)
        self.cordons = Cordons(self.fleet.store)

    def sim(self, name: str):
        return self.set.members[name]

    def tick(self, seconds: float = 0.0, passes: int = 1) -> None:
        self.clock.t += seconds
        for _ in range(passes):
            self.fleet.controller.run_once(self.clock.t)

    def submit(self, name: str, *, gpus: int = 1) -> None:
        self.fleet.submit_job(TrainJob.model_validate({"metadata": {"name": name}, "spec": {
            "entrypoint": "python train.py", "queue": "team-a",
            "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": gpus}}}}), ADMIN)

    def job(self, name: str) -> TrainJob:
        return self.fleet.store.get("TrainJob", name).doc

    def where(self, name: str) -> str | None:
        job = self.job(name)
        return self.set._holder(run_id_for(name, job.status.attempt, job.metadata.uid))

    def cordon(self, name: str, *, drain: bool = False) -> None:
        self.cordons.set(name, drain=drain, reason="maintenance", auto=False, now=self.clock.t)


@pytest.fixture
def two(tmp_path):
    w = World(tmp_path, ["eu", "us"])
    yield w
    w.fleet.close()


def test_runs_spread_over_the_clusters_that_have_capacity_and_quota_is_one_over_all(two):
    w = two
    for name in ("eu", "us"):
        for i in range(6):
            w.sim(name).script_run(f"j{i}", runtime=100, startup=1)
    for i in range(6):
        w.submit(f"j{i}")
    w.tick(passes=2)
    running = [f"j{i}" for i in range(6) if w.job(f"j{i}").status.state in (JobState.STARTING, JobState.RUNNING)]
    # team-a's quota (2 GPUs on l4-res + 4 on l4-spot) is one over both clusters: 6 run, on both
    assert len(running) == 6
    placed = Counter(w.where(n) for n in running)
    assert set(placed) == {"eu", "us"} and all(n >= 2 for n in placed.values()), placed
    # a restarted service (a new set over the same clusters) learns where each run is from the clusters
    from rayfleet.backends.cluster_set import ClusterSet

    again = ClusterSet(w.set.members, w.set.pools, clock=w.clock)
    assert {n: again._holder(run_id_for(n, 1, w.job(n).metadata.uid)) for n in running} == {n: w.where(n) for n in running}
    w.tick(101, passes=2)
    assert {w.job(f"j{i}").status.state for i in range(6)} == {JobState.SUCCEEDED}


def test_a_cordoned_cluster_gets_no_new_work_and_its_running_work_finishes(two):
    w = two
    for name in ("eu", "us"):
        for i in range(8):
            w.sim(name).script_run(f"j{i}", runtime=100, startup=1)
    w.submit("j0")
    w.submit("j1")
    w.tick(passes=2)
    on_eu = [n for n in ("j0", "j1") if w.where(n) == "eu"]
    assert w.set.capacity()["l4-res"].hosts == 4
    w.cordon("eu")
    for i in range(2, 5):
        w.submit(f"j{i}")
    w.tick(passes=2)
    assert w.set.capacity()["l4-res"].hosts == 2   # the cordoned cluster's capacity is left out
    assert [w.where(f"j{i}") for i in range(2, 5)] == ["us"] * 3
    w.tick(101, passes=3)
    for n in on_eu:   # what ran there finished there
        assert w.job(n).status.state == JobState.SUCCEEDED and w.job(n).status.attempt == 1
    states = w.fleet.store.events("Cluster", "eu")
    assert [e.type for e in states] == ["ClusterCordoned"]


def test_a_drained_cluster_s_jobs_checkpoint_and_resume_on_another_without_counting_a_restart(two):
    w = two
    for name in ("eu", "us"):
        w.sim(name).script_run("long", runtime=1000, startup=1, step_time=1, checkpoint_every=1000)
    w.submit("long")
    w.tick(passes=2)
    first = w.where("long")
    other = "us" if first == "eu" else "eu"
    assert w.job("long").status.cluster == first
    w.tick(300)
    assert w.job("long").status.state == JobState.RUNNING
    w.cordon(first, drain=True)
    w.tick(passes=3)   # notice -> checkpoint -> stop -> requeued
    w.tick(1, passes=3)
    job = w.job("long")
    assert job.status.attempt == 2 and w.where("long") == other, (job.status.state, job.status.message)
    assert job.status.restarts == 0 and job.status.interruptions[-1].reason == "cluster-drained"
    w.tick(2, passes=2)
    st = w.job("long").status
    assert st.state == JobState.RUNNING and st.interruptions[-1].resumed_from_step is not None
    assert st.cluster == other
    launched = [e for e in w.fleet.store.events("TrainJob", "long") if e.type == "Launched"]
    assert [e.message.rsplit(" ", 1)[-1] for e in launched] == [first, other]
    assert st.interruptions[-1].resumed_from_step >= 290   # resumed from the checkpoint the drain asked for
    w.tick(800, passes=3)
    assert w.job("long").status.state == JobState.SUCCEEDED


def test_a_cluster_that_stops_answering_is_cordoned_automatically_and_comes_back(tmp_path):
    w = World(tmp_path, ["eu", "us"], failover="  failover: {unreachableAfter: 60, recoverAfter: 120}\n")
    try:
        for name in ("eu", "us"):
            for i in range(8):
                w.sim(name).script_run(f"j{i}", runtime=400, startup=1)
        w.submit("j0")
        w.submit("j1")
        w.tick(passes=2)
        w.tick(2)
        on = {n: w.where(n) for n in ("j0", "j1")}
        w.sim("eu").outage(until=w.clock.t + 200)
        w.tick(1)    # the first pass that finds it silent
        w.tick(30)
        assert "eu" not in w.cordons.all()
        w.tick(31)
        cordon = w.cordons.all()["eu"]
        assert cordon.auto and "not answering for 61s" in cordon.reason and "unreachable" in cordon.reason
        for n, c in on.items():   # its runs are neither lost nor relaunched: they may still run
            assert w.job(n).status.attempt == 1 and w.job(n).status.state == JobState.RUNNING, (n, c)
        w.submit("j2")
        w.tick(passes=2)
        assert w.where("j2") == "us"
        assert sorted(on.values()) == ["eu", "us"]
        stopped = next(n for n, c in on.items() if c == "eu")
        w.fleet.stop_job(stopped, ADMIN)   # asked while eu is silent: sent once it answers
        w.tick(passes=2)
        run = w.sim("eu").runs[run_id_for(stopped, 1, w.job(stopped).metadata.uid)]
        assert run.state.value == "RUNNING"
        w.tick(139)   # answering again (200 s after the outage began) ...
        assert "eu" in w.cordons.all()
        assert run.state.value == "STOPPED"   # the stop it was owed, sent when it answered
        w.tick(121)   # ... for 120 s
        assert "eu" not in w.cordons.all()
        assert [e.type for e in w.fleet.store.events("Cluster", "eu")] == ["ClusterCordoned", "ClusterUncordoned"]
        w.tick(200, passes=3)
        assert w.job(stopped).status.state == JobState.STOPPED
        kept = next(n for n in on if n != stopped)
        assert w.job(kept).status.state == JobState.SUCCEEDED and w.job(kept).status.attempt == 1
    finally:
        w.fleet.close()


def _long_job_then_silence(w: World, *, runtime: float, outage: float) -> tuple[str, str]:
    """A checkpointing job running on one of two clusters for 250 s (checkpoints at 100 and 200),
    then that cluster silent for ``outage`` seconds: (its cluster, the other)."""
    for name in ("eu", "us"):
        w.sim(name).script_run("long", runtime=runtime, startup=1, step_time=1, checkpoint_every=100)
    w.submit("long")
    w.tick(passes=2)
    first = w.where("long")
    w.tick(250)
    w.sim(first).outage(until=w.clock.t + outage)
    w.tick(1)     # the first pass that finds it silent
    return first, "us" if first == "eu" else "eu"


def _moved_from_its_last_checkpoint(w: World, first: str, other: str):
    """The job resumed on ``other`` from step 200, a disruption; its old run on ``first`` still
    runs (the silent cluster never heard of the move): returned."""
    st = w.job("long").status
    assert st.attempt == 2 and w.where("long") == other and st.restarts == 0, (st.state, st.message)
    assert st.interruptions[-1].reason == "cluster-drained"
    w.tick(2, passes=2)
    assert w.job("long").status.interruptions[-1].resumed_from_step == 200
    old = w.sim(first).runs[run_id_for("long", 1, w.job("long").metadata.uid)]
    assert old.state.value == "RUNNING"
    return old


def test_a_silent_cluster_drained_by_hand_moves_its_jobs_at_the_drain_grace_and_stops_them_when_it_answers(tmp_path):
    w = World(tmp_path, ["eu", "us"], failover="  failover: {unreachableAfter: 600, drainGrace: 120}\n")
    try:
        first, other = _long_job_then_silence(w, runtime=1000, outage=200)
        w.cordon(first, drain=True)   # the admin gives up on it
        w.tick(60, passes=2)
        assert w.job("long").status.attempt == 1   # no checkpoint can be asked for: it waits for the grace
        w.tick(60, passes=3)
        w.tick(2, passes=3)
        old = _moved_from_its_last_checkpoint(w, first, other)
        w.tick(80)   # the silent cluster answers again: the old run gets the stop it was owed
        assert old.state.value == "STOPPED"
        w.tick(1000, passes=2)
        assert w.job("long").status.state == JobState.SUCCEEDED
    finally:
        w.fleet.close()


def test_a_cluster_silent_past_lost_after_is_drained_on_its_own_and_its_jobs_resume_elsewhere(tmp_path):
    w = World(tmp_path, ["eu", "us"], failover="  failover: {unreachableAfter: 60, lostAfter: 300, drainGrace: 120, recoverAfter: 60}\n")
    try:
        first, other = _long_job_then_silence(w, runtime=2000, outage=600)
        w.tick(61)
        assert not w.cordons.all()[first].drain and w.job("long").status.attempt == 1   # cordoned: it may still run
        w.tick(200, passes=2)
        assert w.job("long").status.attempt == 1 and not w.cordons.all()[first].drain  # 261 s silent: not lost yet
        w.tick(40, passes=2)
        cordon = w.cordons.all()[first]
        assert cordon.auto and cordon.drain and cordon.reason.startswith("presumed lost: not answering for 301s")
        w.tick(2, passes=3)    # the drain grace (120 s since the cordon) is long past: it moves now
        w.tick(2, passes=3)
        old = _moved_from_its_last_checkpoint(w, first, other)
        w.tick(300)    # it answers again: the old run gets the stop it was owed ...
        assert old.state.value == "STOPPED"
        w.tick(61, passes=2)   # ... and, answering for recoverAfter, the rule's drain is lifted
        assert first not in w.cordons.all()
        assert [e.type for e in w.fleet.store.events("Cluster", first)] == ["ClusterCordoned", "ClusterDrained", "ClusterUncordoned"]
        w.tick(2000, passes=2)
        assert w.job("long").status.state == JobState.SUCCEEDED
    finally:
        w.fleet.close()


def test_an_admin_s_cordon_is_not_drained_by_the_lost_rule_and_null_never_presumes_lost(tmp_path):
    for failover, cordon_by_hand in (("  failover: {unreachableAfter: 60, lostAfter: 120}\n", True),
                                     ("  failover: {unreachableAfter: 60, lostAfter: null}\n", False)):
        (tmp_path / str(cordon_by_hand)).mkdir()
        w = World(tmp_path / str(cordon_by_hand), ["eu", "us"], failover=failover)
        try:
            for name in ("eu", "us"):
                w.sim(name).script_run("long", runtime=2000, startup=1)
            w.submit("long")
            w.tick(passes=2)
            w.tick(2)     # running (a run still starting on a silent cluster is the capacity fallback's)
            first = w.where("long")
            if cordon_by_hand:
                w.cordon(first)
            w.sim(first).outage(until=w.clock.t + 1000)
            w.tick(1)
            w.tick(500, passes=2)
            cordon = w.cordons.all()[first]
            assert not cordon.drain and cordon.auto is not cordon_by_hand
            assert w.job("long").status.attempt == 1 and w.where("long") == first
        finally:
            w.fleet.close()


def test_a_service_on_a_drained_cluster_comes_up_on_another_before_it_goes(two):
    w = two
    svc = Service.model_validate({"metadata": {"name": "chat"}, "spec": {
        "importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a",
        "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"cpu": 2, "memory": "4Gi"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 1}}})
    w.fleet.deploy_service(svc, ADMIN)
    w.tick(passes=3)
    w.tick(60, passes=3)
    first = w.set._service_holder("chat")
    assert first is not None and w.set.service_status("chat").replicas_running == 1
    w.cordon(first, drain=True)
    running = []
    for _ in range(20):
        w.tick(10)
        rs = w.set.service_status("chat")
        running.append(rs.replicas_running if rs else 0)
    assert w.set._service_holder("chat") != first
    assert min(running) >= 1, running   # never without a running replica
    assert w.sim(first).service_status("chat") is None   # gone from the drained cluster


def test_ten_clusters_cordoned_and_drained_in_turn(tmp_path):
    names = [f"c{i}" for i in range(10)]
    w = World(tmp_path, names)
    try:
        for n in names:
            for i in range(6):
                w.sim(n).script_run(f"j{i}", runtime=300, startup=1, step_time=1, checkpoint_every=50)
        for n in names[:3]:
            w.cordon(n)
        for i in range(6):
            w.submit(f"j{i}")
        w.tick(passes=2)
        placed = {f"j{i}": w.where(f"j{i}") for i in range(6)}
        assert all(c in names[3:] for c in placed.values()), placed
        drained = sorted(set(placed.values()))
        assert len(drained) >= 2, placed   # spread: two of the clusters they run on are drained next
        for c in drained[:2]:
            w.cordon(c, drain=True)
        for _ in range(8):
            w.tick(20, passes=2)
        for i in range(6):
            st = w.job(f"j{i}").status
            assert w.where(f"j{i}") in set(names) - set(names[:3]) - set(drained[:2]), (i, w.where(f"j{i}"))
            assert st.restarts == 0 and st.state == JobState.RUNNING
        w.tick(400, passes=3)
        assert {w.job(f"j{i}").status.state for i in range(6)} == {JobState.SUCCEEDED}
    finally:
        w.fleet.close()


def test_cluster_documents_are_checked(tmp_path):
    path = platform(tmp_path, ["eu", "eu"])
    with pytest.raises(ConfigError) as e:
        load_config([path])
    assert any("duplicate name: Cluster/eu" in p.problem for p in e.value.problems)
    path.write_text(path.read_text().replace("metadata: {name: eu}\nspec:\n", "metadata: {name: us}\nspec:\n  pools: [a100]\n", 1))
    with pytest.raises(ConfigError) as e:
        load_config([path])
    assert any(p.field == "spec.pools.0" and "unknown pool 'a100'" in p.problem for p in e.value.problems)


def test_cordon_and_uncordon_over_http_the_sdk_and_the_cli(two):
    import httpx
    from http_server import serving
    from typer.testing import CliRunner

    from rayfleet.cli import app as cli
    from rayfleet.client import FleetClient
    from rayfleet.errors import Forbidden, NotFound
    from rayfleet.server.app import create_app
    from rayfleet.server.tokens import ensure_tokens

    w = two
    creds = ensure_tokens(w.fleet.store, w.config)
    with serving(create_app(w.fleet, start_controller=False)) as url:
        admin, team = FleetClient(url, token=creds["admin"]), FleetClient(url, token=creds["teams"]["team-a"])
        assert [(c["metadata"]["name"], c["status"]["cordoned"]) for c in team.clusters()] == [("eu", False), ("us", False)]
        with pytest.raises(Forbidden):
            team.cordon_cluster("eu")
        with pytest.raises(NotFound):
            admin.cordon_cluster("mars")
        got = admin.cordon_cluster("eu", drain=True, reason="kernel upgrade")
        assert got["status"]["cordoned"] and got["status"]["drain"] and got["status"]["cordonReason"] == "kernel upgrade"
        bad = httpx.post(f"{url}/api/v1/clusters/eu/cordon", json={"drain": "yes please"},
                         headers={"Authorization": f"Bearer {creds['admin']}"})
        assert bad.status_code == 422 and "drain" in bad.text
        w.tick()
        assert w.set.cordons["eu"].drain   # the controller's pass put it in force
        runner = CliRunner()
        env = {"RAYFLEET_URL": url, "RAYFLEET_TOKEN": creds["admin"]}
        listed = runner.invoke(cli, ["cluster", "list"], env=env)
        assert listed.exit_code == 0 and "drained: kernel upgrade" in listed.output, listed.output
        out = runner.invoke(cli, ["cluster", "uncordon", "eu"], env=env)
        assert out.exit_code == 0 and "cluster eu uncordoned" in out.output
        out = runner.invoke(cli, ["cluster", "cordon", "us", "--reason", "zone incident"], env=env)
        assert out.exit_code == 0 and "cluster us cordoned" in out.output
        w.tick()
        assert set(w.set.cordons) == {"us"}
        events = [e.type for e in w.fleet.store.events("Cluster", "eu")]
        assert events == ["ClusterDrained", "ClusterUncordoned"]
        admin.close()
        team.close()


def test_the_only_cluster_of_a_platform_cannot_be_cordoned(tmp_path):
    from rayfleet.backends import make_backend
    from rayfleet.errors import Conflict

    cfg = load_config([Path(__file__).with_name("sim_platform.yaml")])
    fleet = assemble(cfg, make_backend(cfg, tmp_path), tmp_path)
    try:
        with pytest.raises(Conflict, match="only cluster"):
            fleet.cordon_cluster("sim", ADMIN, drain=False, reason="")
        assert [c["status"]["cordoned"] for c in fleet.clusters_view()] == [False]
    finally:
        fleet.close()
