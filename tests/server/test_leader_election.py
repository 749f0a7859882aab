"""Leader election among replicas sharing one store (server/leader.py, server/leases.py), stepped by
hand on fake monotonic clocks: who leads, take-over after the leader's renewals stop, fencing of a
leader that lost its lease, release on a clean stop; and two control services over one simulated
cluster handing the controller over without losing or relaunching a job. On a SQLite file (two
stores on one file, as two replicas on one database); tests/server/test_store_postgres.py and
tests/e2e/test_replicas.py run the same on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rayfleet.api import JobState, TrainJob
from rayfleet.backends.sim import from_config
from rayfleet.config import load_config
from rayfleet.errors import NotLeader, SpecError
from rayfleet.server.auth import Principal
from rayfleet.server.leader import ElectionTiming, LeaderElector
from rayfleet.server.leases import CONTROLLER, Leases
from rayfleet.server.main import assemble
from rayfleet.server.store import Store

TIMING = ElectionTiming(lease_duration=10, renew_deadline=7, retry_period=2)
CONFIG = load_config([Path(__file__).with_name("sim_platform.yaml")])
ADMIN = Principal(team=None, admin=True, label="admin")


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Replica:
    def __init__(self, target, name: str):
        self.store = Store(target)
        self.mono = Mono()
        self.started: list[int] = []
        self.stopped: list[str] = []
        self.elector = LeaderElector(self.store, holder=name, timing=TIMING, monotonic=self.mono,
                                     on_started=self.started.append, on_stopped=self.stopped.append)

    def step(self, advance: float = 0.0) -> None:
        self.mono.t += advance
        self.elector.step()


def _job(name: str) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "echo hi", "queue": "team-a"}})


@pytest.fixture
def pair(store_target):
    a, b = Replica(store_target, "a"), Replica(store_target, "b")
    yield a, b
    a.store.close()
    b.store.close()


def test_one_replica_leads_and_the_other_follows_while_the_leader_renews(pair):
    a, b = pair
    a.step()
    b.step()
    assert a.started == [1] and a.elector.role() == "leader"
    assert b.started == [] and b.elector.role() == "follower"
    for _ in range(20):   # 40 s: the leader renews every 2 s, so the follower never sees it stale
        a.step(2)
        b.step(2)
    assert b.started == [] and a.elector.leading()
    assert Leases(a.store).get(CONTROLLER).renewals == 20


def test_a_follower_takes_over_once_the_leader_s_renewals_stop_for_the_lease_duration(pair):
    a, b = pair
    a.step()
    b.step()
    # a dies (no more renewals); b's own clock decides, whatever the wall clocks say
    b.step(9.9)
    assert b.started == []
    b.step(0.2)
    assert b.started == [2] and b.elector.leading()
    lease = Leases(b.store).get(CONTROLLER)
    assert (lease.holder, lease.generation) == ("b", 2)


def test_a_leader_that_lost_its_lease_cannot_write_and_steps_down(pair):
    a, b = pair
    a.step()
    b.step()
    b.step(10.5)   # a was paused past its lease: b took over
    assert b.started == [2]
    a.store.create(_job("j"))   # (the API's writes are not fenced: every replica takes submissions)
    with a.store.fenced(CONTROLLER, 1), pytest.raises(NotLeader, match="generation 1; now generation 2, held by b"):
        with a.store.batch():
            job = a.store.get("TrainJob", "j").doc
            job.status.state = JobState.ADMITTED
            a.store.update(job, event="Admitted")
    assert b.store.get("TrainJob", "j").doc.status.state == JobState.QUEUED   # nothing of it was written
    with b.store.fenced(CONTROLLER, 2):   # the leader's own writes go through
        job = b.store.get("TrainJob", "j").doc
        job.status.state = JobState.ADMITTED
        b.store.update(job, event="Admitted")
    a.step()   # a resumes: its renewal fails, it stops leading
    assert a.stopped and "taken over by b (generation 2)" in a.stopped[0] and not a.elector.leading()


def test_a_leader_that_cannot_renew_stops_leading_before_anyone_may_take_over(pair, monkeypatch):
    a, b = pair
    a.step()
    assert a.elector.leading()
    a.mono.t += 6.9
    assert a.elector.leading()
    a.mono.t += 0.2   # no renewal for the renew deadline (paused, or the store unreachable)
    assert not a.elector.leading()   # a pass would act on nothing now

    def unreachable(*args, **kwargs):
        raise OSError("store unreachable")

    monkeypatch.setattr(a.elector.leases, "renew", unreachable)
    a.step()
    assert a.stopped and "could not renew" in a.stopped[0] and a.elector.held is None


def test_a_clean_stop_releases_the_lease_and_the_next_replica_takes_it_at_once(pair):
    a, b = pair
    a.step()
    b.step()
    a.elector.stop()
    assert a.stopped == ["this replica is stopping"]
    b.step()   # no waiting out the lease
    assert b.started == [2]


def test_of_two_replicas_taking_over_at_once_one_wins(pair, store_target):
    a, b = pair
    c = Replica(store_target, "c")
    a.step()
    seen = Leases(b.store).get(CONTROLLER)
    first = Leases(b.store).acquire(CONTROLLER, "b", seen, time.time())
    second = Leases(c.store).acquire(CONTROLLER, "c", seen, time.time())
    assert first is not None and first.generation == 2 and second is None
    c.store.close()


def test_replicas_starting_together_on_a_new_database_mint_one_token_each_not_one_per_replica(store_target):
    import threading

    from rayfleet.server.tokens import ensure_tokens

    stores = [Store(store_target) for _ in range(4)]
    minted: list[dict] = []
    start = threading.Barrier(len(stores))

    def first_start(store: Store) -> None:
        start.wait()
        minted.append(ensure_tokens(store, CONFIG))

    threads = [threading.Thread(target=first_start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    tokens = stores[0].list_tokens()
    assert sum(t.admin for t in tokens) == 1 and sorted(t.team for t in tokens if not t.admin) == sorted(CONFIG.teams)
    assert sum(m["admin"] is not None for m in minted) == 1                  # one replica minted (and shows) the admin token
    assert sorted(team for m in minted for team in m["teams"]) == sorted(CONFIG.teams)
    for s in stores:
        s.close()


def test_timings_that_do_not_fit_together_are_refused():
    with pytest.raises(SpecError) as e:
        ElectionTiming(lease_duration=5, renew_deadline=7, retry_period=2)
    assert e.value.problems[0].field == "--lease-duration"


# ------------------------------------------------------------------ two control services, one cluster

class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


def _gang_job(name: str) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {
        "entrypoint": "python train.py", "queue": "team-a",
        "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1, "memory": "1Gi"}}}})


def test_a_replica_that_takes_over_adopts_the_runs_the_old_leader_launched(tmp_path):
    clock = Clock()
    sim = from_config(CONFIG, clock=clock)   # one cluster for both replicas
    for i in range(6):
        sim.script_run(f"j{i}", runtime=100, startup=1)
    sim.up()
    db = tmp_path / "shared.db"
    one = assemble(CONFIG, sim, tmp_path / "one", clock=clock, store=str(db), election=TIMING)
    two = assemble(CONFIG, sim, tmp_path / "two", clock=clock, store=str(db), election=TIMING)
    mono = {"one": Mono(), "two": Mono()}
    for fleet, name in ((one, "one"), (two, "two")):
        fleet.elector.holder, fleet.elector.monotonic = name, mono[name]
        fleet.lead = fleet.controller.take_over    # (stepped by hand below: no controller thread)
        fleet.elector.on_started = lambda gen, f=fleet: f.lead()
    try:
        one.elector.step()
        two.elector.step()
        assert (one.role(), two.role()) == ("leader", "follower")
        for i in range(6):
            (one if i % 2 else two).submit_job(_gang_job(f"j{i}"), ADMIN)   # either replica takes submissions
        with one.store.fenced(CONTROLLER, one.elector.generation):
            one.controller.run_once(clock.t)
        launched = {r.name for r in one.store.list("TrainJob", states=[JobState.STARTING.value, JobState.RUNNING.value])}
        assert launched, "the leader launched nothing"
        with pytest.raises(NotLeader):   # the follower's controller acts on nothing
            two.controller.run_once(clock.t)
        # one dies; two takes over 10 s later on its own clock and carries on from the store
        clock.t += 11
        mono["two"].t += 11
        two.elector.step()
        assert two.role() == "leader" and two.elector.generation == 2
        two.controller.refresh_view()
        for _ in range(30):
            clock.t += 10
            mono["two"].t += 2
            two.elector.step()
            with two.store.fenced(CONTROLLER, two.elector.generation):
                two.controller.run_once(clock.t)
        states = {r.name: r.doc.status.state for r in two.store.list("TrainJob")}
        assert states == {f"j{i}": JobState.SUCCEEDED for i in range(6)}, states
        assert all(sim.launch_count(f"j{i}") == 1 for i in range(6))   # adopted, never launched again
        assert all(two.store.get("TrainJob", f"j{i}").doc.status.attempt == 1 for i in range(6))
        # the old leader, resumed after its pause, acts on nothing: it has not renewed since
        mono["one"].t += 11 + 60
        assert not one.elector.leading()
        with pytest.raises(NotLeader):
            one.controller.run_once(clock.t)
    finally:
        one.store.close()
        two.store.close()


def _zip(files: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_what_one_replica_keeps_every_replica_reads_packages_and_logs(tmp_path, store_target):
    """Each replica has its own data directory: a package uploaded to the follower is launched by
    the leader, and the logs the leader saved are served by the follower (both in the store)."""
    import hashlib

    clock = Clock()
    sim = from_config(CONFIG, clock=clock)
    sim.script_run("uses-pkg", runtime=5, startup=1)
    sim.up()
    leader = assemble(CONFIG, sim, tmp_path / "leader", clock=clock, store=str(store_target), election=TIMING)
    follower = assemble(CONFIG, sim, tmp_path / "follower", clock=clock, store=str(store_target), election=TIMING)
    team_a = Principal(team="team-a", admin=False, label="team-a")
    try:
        leader.elector.holder, follower.elector.holder = "leader", "follower"
        for fleet in (leader, follower):   # (passes stepped by hand below: no controller thread)
            fleet.elector.on_started = lambda gen: None
        leader.elector.step()
        follower.elector.step()
        assert (leader.role(), follower.role()) == ("leader", "follower")
        data = _zip({"main.py": b"print('from the follower')"})
        uri = f"gcs://_ray_pkg_{hashlib.sha1(data).hexdigest()}.zip"
        assert follower.packages.upload("team-a", uri, data)
        follower.submit_job(TrainJob.model_validate({"metadata": {"name": "uses-pkg"}, "spec": {
            "entrypoint": "python main.py", "queue": "team-a", "runtimeEnv": {"working_dir": uri},
            "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1, "memory": "1Gi"}}}}), team_a)
        for _ in range(4):
            with leader.store.fenced(CONTROLLER, leader.elector.generation):
                leader.controller.run_once(clock.t)
            clock.t += 3
        assert leader.store.get("TrainJob", "uses-pkg").doc.status.state == JobState.SUCCEEDED
        assert list(sim.packages.values()) == [len(data)]   # the leader handed the follower's upload over
        logs = follower.job_logs("uses-pkg", team_a)
        assert logs and logs == leader.job_logs("uses-pkg", team_a)
        assert not list((tmp_path / "leader" / "logs").iterdir()) and not list((tmp_path / "leader" / "packages").iterdir())
        # deleted with the job
        follower.delete_job("uses-pkg", team_a)
        assert follower.store._q("SELECT count(*) FROM job_logs")[0][0] == 0
    finally:
        leader.store.close()
        follower.store.close()
