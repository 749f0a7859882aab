"""Services when capacity comes and goes: the real controller, store, quota and ServiceManager over
the simulated backend, driven by ``run_once(now)`` on an injected clock.

The sim counts failed requests (``requestRate`` / ``requestLatency``): requests in flight on a group
that goes without a drain fail, and so does every request while no group is routed. Each move
below must end with zero; the control test shows the count does fail when a host goes unannounced.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rayfleet.api import JobState, Service, ServiceState, TrainJob
from rayfleet.backends.sim import from_config
from rayfleet.config import load_config
from rayfleet.server.auth import Principal
from rayfleet.server.main import assemble

PLATFORM = Path(__file__).with_name("sim_platform.yaml")
ADMIN = Principal(team=None, admin=True, label="admin")
RATE, LATENCY = 20.0, 0.5


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


def capacity_pools(now: float, window_end: float) -> str:
    """A DWS flex-start pool with node recycling, a calendar pool whose window is open now, and a
    queue for each (team-c: DWS then spot; calendar: the window then spot)."""
    stamp = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    l4 = "accelerator: nvidia-l4\n  acceleratorsPerHost: 1\n  machineType: g2-standard-8\n  cpuPerHost: 8\n  memoryPerHost: 32Gi"
    def quota(*flavors: str) -> str:
        return "\n".join(f"""        - name: {f}
          resources:
            - {{name: cpu, nominalQuota: 16}}
            - {{name: memory, nominalQuota: 64Gi}}
            - {{name: nvidia.com/gpu, nominalQuota: 2}}
            - {{name: google.com/tpu, nominalQuota: 0}}""" for f in flavors)
    return f"""
---
kind: Pool
metadata: {{name: l4-dws}}
spec:
  {l4}
  maxReplicas: 4
  provisioning: {{mode: dws-flex, maxRunDuration: 3600, nodeRecyclingLeadTime: 600}}
---
kind: Pool
metadata: {{name: l4-cal}}
spec:
  {l4}
  maxReplicas: 2
  provisioning: {{mode: dws-calendar, drainBefore: 600, window: {{start: "{stamp(now - 3600)}", end: "{stamp(window_end)}"}}}}
---
kind: Flavor
metadata: {{name: l4-dws}}
spec: {{pool: l4-dws}}
---
kind: Flavor
metadata: {{name: l4-cal}}
spec: {{pool: l4-cal}}
---
kind: Team
metadata: {{name: team-c}}
spec: {{displayName: Inference, costCenter: cc-c}}
---
kind: Queue
metadata: {{name: team-c}}
spec:
  team: team-c
  resourceGroups:
    - coveredResources: [cpu, memory, nvidia.com/gpu, google.com/tpu]
      flavors:
{quota("l4-dws", "l4-spot")}
---
kind: Queue
metadata: {{name: calendar}}
spec:
  team: team-c
  resourceGroups:
    - coveredResources: [cpu, memory, nvidia.com/gpu, google.com/tpu]
      flavors:
{quota("l4-cal", "l4-spot")}
"""


class World:
    def __init__(self, tmp_path: Path, *, move_back: bool = False, window_end: float = 7200.0):
        self.clock = Clock()
        text = PLATFORM.read_text() + capacity_pools(self.clock.t, self.clock.t + window_end)
        if move_back:
            text = text.replace("    - {flavor: l4-spot}\n", "    - {flavor: l4-spot}\n  activeMigration: {optimizeRulePriority: true}\n")
            assert "optimizeRulePriority" in text
        (tmp_path / "platform.yaml").write_text(text)
        self.config = load_config([tmp_path / "platform.yaml"])
        self.sim = from_config(self.config, clock=self.clock)
        self.dir = tmp_path
        self.fleet = None

    def start(self) -> World:
        self.sim.up()
        self.fleet = assemble(self.config, self.sim, self.dir, clock=self.clock)
        return self

    def crash(self) -> None:
        """Drop the control service and build a new one over the same store file and the same sim."""
        self.fleet.close()
        self.fleet = assemble(self.config, self.sim, self.dir, clock=self.clock)

    def tick(self, seconds: float = 0.0, passes: int = 1) -> None:
        self.clock.t += seconds
        for _ in range(passes):
            self.fleet.controller.run_once(self.clock.t)

    def deploy(self, name: str, *, queue: str = "team-b", replicas: int = 2, ready_after: float = 10.0) -> None:
        """A service of ``replicas`` one-host L4 groups, under load from the moment it is live."""
        self.sim.script_service(name, ready_after=ready_after, request_rate=RATE, request_latency=LATENCY)
        svc = Service.model_validate({"metadata": {"name": name}, "spec": {
            "importPath": "serve_apps.classifier:app", "queue": queue,
            "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"cpu": 2, "nvidia.com/gpu": 1}},
            "autoscaling": {"minReplicas": replicas, "maxReplicas": replicas}}})
        self.fleet.deploy_service(svc, ADMIN)

    def status(self, name: str):
        return self.fleet.store.get("Service", name).doc.status

    def run(self, name: str):
        return self.sim.service_status(name)

    def hosts(self, name: str) -> list[str]:
        return [h for g in self.run(name).groups for h in g.hosts]

    def events(self, name: str) -> list:
        return self.fleet.events(self.fleet.store.get("Service", name))

    def until(self, cond, *, step: float = 1.0, limit: float = 600.0) -> None:
        end = self.clock.t + limit
        while not cond():
            assert self.clock.t < end, "condition not reached"
            self.tick(step)

    def running(self, name: str, replicas: int) -> None:
        self.until(lambda: self.status(name).state == ServiceState.RUNNING and self.run(name).replicas_running == replicas)


@pytest.fixture
def world(tmp_path):
    worlds: list[World] = []

    def make(**kw) -> World:
        w = World(tmp_path, **kw)
        worlds.append(w)
        return w.start()

    yield make
    for w in worlds:
        w.fleet.close()


def test_host_lost_without_notice_fails_requests(world):
    """The control: the count can fail. A host goes unannounced: its group's requests in flight
    fail, and with both groups gone (one host each) every request fails until Serve has one back."""
    w = world()
    w.deploy("chat")
    w.running("chat", 2)
    assert w.run("chat").failed_requests == 0
    a, b = w.hosts("chat")
    w.sim.lose_host(a)
    w.tick()
    in_flight = RATE / 2 * LATENCY
    assert w.run("chat").failed_requests == pytest.approx(in_flight, abs=1)
    w.sim.lose_host(b)
    w.sim.lose_host(w.hosts("chat")[0])   # the group that was restarted elsewhere as well
    w.tick(5)
    assert w.run("chat").replicas_running == 0 and w.run("chat").failed_requests >= RATE * 5
    w.running("chat", 2)


def test_spot_reclaim_with_notice_moves_the_group_first(world):
    w = world()
    w.deploy("chat")
    w.running("chat", 2)
    victim = w.hosts("chat")[0]
    w.sim.reclaim(victim, notice=30)
    w.tick()
    moving = [g for g in w.run("chat").groups if g.moving_to]
    assert [g.index for g in moving] == [0]
    w.tick()
    assert "moving 1 replica group" in w.status("chat").message
    assert any(e.type == "Moving" and "reclaim notice" in e.message for e in w.events("chat"))
    w.until(lambda: victim not in w.hosts("chat") and not any(g.moving_to for g in w.run("chat").groups))
    w.tick(40)                                   # the notice runs out: the host goes, nothing was on it
    rs = w.run("chat")
    assert rs.replicas_running == 2 and victim not in w.hosts("chat") and rs.failed_requests == 0
    assert w.sim.pools["l4-spot"].by_name[victim].state == "absent"
    assert w.status("chat").replicas_granted == 2 and w.status("chat").flavor == "l4-spot"


def test_reclaim_notice_too_short_for_the_move_fails_requests(world):
    """Moving what can be moved in the notice: a replacement that takes longer than the notice
    leaves the old group to go without a drain (the count shows it)."""
    w = world()
    w.deploy("slow", ready_after=60)
    w.running("slow", 2)
    w.sim.reclaim(w.hosts("slow")[0], notice=30)
    w.tick()
    w.tick(35)
    assert w.run("slow").failed_requests > 0
    w.running("slow", 2)


def test_move_back_to_the_reservation_group_by_group(world):
    w = world(move_back=True)
    w.sim.script_run("hold", runtime=100)
    job = TrainJob.model_validate({"metadata": {"name": "hold"}, "spec": {
        "entrypoint": "python train.py", "queue": "team-a",
        "gang": {"workers": 2, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}})
    w.fleet.submit_job(job, ADMIN)
    w.tick()
    w.deploy("chat", queue="team-a")
    w.running("chat", 2)
    assert w.status("chat").flavor == "l4-spot"              # the reservation is full: the later step
    assert all(g.pool == "l4-spot" for g in w.run("chat").groups)
    seen: list[tuple[str, ...]] = []
    w.until(lambda: w.fleet.store.get("TrainJob", "hold").doc.status.state == JobState.SUCCEEDED)
    def moved() -> bool:
        pools = tuple(g.pool for g in w.run("chat").groups)
        if not seen or seen[-1] != pools:
            seen.append(pools)
        return w.status("chat").flavor == "l4-res"
    w.until(moved)
    # group by group: group 0 first, then group 1, never both in transit
    assert seen == [("l4-spot", "l4-spot"), ("l4-res", "l4-spot"), ("l4-res", "l4-res")]
    st, rs = w.status("chat"), w.run("chat")
    assert st.group_moves == {} and st.replicas_granted == 2 and rs.replicas_running == 2 and rs.failed_requests == 0
    usage = w.fleet.controller.quota.usage("team-a").usage
    assert usage.get(("l4-res", "nvidia.com/gpu"), 0) == 2 and usage.get(("l4-spot", "nvidia.com/gpu"), 0) == 0
    types = [e.type for e in w.events("chat")]
    assert types.count("MoveAdmitted") == 2 and types.count("Moved") == 1
    w.tick(60)                                 # settled: nothing moves again
    assert w.status("chat").flavor == "l4-res" and w.run("chat").failed_requests == 0
    assert [e.type for e in w.events("chat")].count("Moved") == 1


def test_a_restart_during_a_move_back_keeps_the_move_and_its_quota(world):
    w = world(move_back=True)
    w.sim.script_run("hold", runtime=60)
    job = TrainJob.model_validate({"metadata": {"name": "hold"}, "spec": {
        "entrypoint": "python train.py", "queue": "team-a",
        "gang": {"workers": 2, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}})
    w.fleet.submit_job(job, ADMIN)
    w.tick()
    w.deploy("chat", queue="team-a")
    w.running("chat", 2)
    w.until(lambda: w.status("chat").group_moves == {"0": "l4-res"})
    w.crash()
    usage = w.fleet.controller.quota.usage("team-a").usage
    assert usage.get(("l4-res", "nvidia.com/gpu"), 0) == 1 and usage.get(("l4-spot", "nvidia.com/gpu"), 0) == 2
    w.until(lambda: w.status("chat").flavor == "l4-res")
    usage = w.fleet.controller.quota.usage("team-a").usage
    assert usage.get(("l4-res", "nvidia.com/gpu"), 0) == 2 and usage.get(("l4-spot", "nvidia.com/gpu"), 0) == 0
    assert w.run("chat").failed_requests == 0 and all(g.pool == "l4-res" for g in w.run("chat").groups)


def test_no_move_back_without_active_migration(world):
    w = world()
    w.sim.script_run("hold", runtime=50)
    job = TrainJob.model_validate({"metadata": {"name": "hold"}, "spec": {
        "entrypoint": "python train.py", "queue": "team-a",
        "gang": {"workers": 2, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}})
    w.fleet.submit_job(job, ADMIN)
    w.tick()
    w.deploy("chat", queue="team-a")
    w.running("chat", 2)
    w.tick(120, passes=3)
    assert w.status("chat").flavor == "l4-spot" and all(g.pool == "l4-spot" for g in w.run("chat").groups)


def test_node_recycling_moves_the_group_onto_the_replacement_host(world):
    """A DWS host nears its maximum run time: a RECYCLE notice, a replacement host provisioned; the
    group comes up on that host, traffic moves, the old group drains before the host goes."""
    w = world()
    w.sim.pool("l4-dws").provisioning(delay=120)
    w.deploy("chat", queue="team-c", replicas=1)
    w.running("chat", 1)
    assert w.status("chat").flavor == "l4-dws"
    (old,) = w.hosts("chat")
    up = w.sim.pools["l4-dws"].by_name[old].up_at
    w.tick(up + 3000 - w.clock.t - 1)
    assert not any(e.type == "Moving" for e in w.events("chat"))
    w.clock.t += 2
    w.sim.capacity()                                  # the sim alone: the notice is out, the replacement asked for
    replacement = [h.name for h in w.sim.pools["l4-dws"].hosts if h.state == "provisioning"]
    assert len(replacement) == 1 and w.sim.pools["l4-dws"].by_name[old].notice.kind.value == "recycle"
    w.tick()
    assert any(e.type == "Moving" and "recycle notice on " + old in e.message for e in w.events("chat"))
    assert w.hosts("chat") == [old] and w.run("chat").replicas_running == 1   # serving on the old host meanwhile
    w.until(lambda: w.hosts("chat") != [old], step=5)
    assert w.hosts("chat") == replacement and w.run("chat").replicas_running == 1
    w.tick(700)                                       # past the old host's end of life
    assert w.sim.pools["l4-dws"].by_name[old].state == "absent"
    rs = w.run("chat")
    assert rs.replicas_running == 1 and rs.failed_requests == 0 and w.status("chat").flavor == "l4-dws"


def test_calendar_window_end_moves_the_groups_to_other_capacity(world):
    w = world(window_end=1800)
    w.deploy("chat", queue="calendar")
    w.running("chat", 2)
    assert w.status("chat").flavor == "l4-cal" and all(g.pool == "l4-cal" for g in w.run("chat").groups)
    end = w.clock.t + 1800
    w.until(lambda: w.status("chat").flavor != "l4-cal", step=10, limit=1800)
    assert w.clock.t < end                            # moved before the window closed
    assert w.status("chat").flavor == "l4-spot" and all(g.pool == "l4-spot" for g in w.run("chat").groups)
    types = [e.type for e in w.events("chat")]
    assert types.count("MoveRequested") == 2 and types.count("Moved") == 1
    w.tick(end - w.clock.t + 10)                      # the window closes: its hosts go, nothing was on them
    assert all(h.state == "absent" for h in w.sim.pools["l4-cal"].hosts)
    rs = w.run("chat")
    assert rs.replicas_running == 2 and rs.failed_requests == 0
    usage = w.fleet.controller.quota.usage("calendar").usage
    assert usage.get(("l4-spot", "nvidia.com/gpu"), 0) == 2 and usage.get(("l4-cal", "nvidia.com/gpu"), 0) == 0
