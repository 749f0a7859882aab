"""A pass offers quota the heads of each queue (``server/queue_heads.py``): BestEffortFIFO parks heads
that wait so the jobs behind them get their turn, and takes them up again once quota is released;
StrictFIFO never passes its head; only the jobs quota looked at get a waiting message."""

from __future__ import annotations

import time

import pytest

from rayfleet.api import JobState, TrainJob
from rayfleet.backends.sim import from_config
from rayfleet.config import load_config
from rayfleet.server.auth import Principal
from rayfleet.server.main import assemble

ADMIN = Principal(team=None, admin=True, label="admin")
PLATFORM = """
kind: Cluster
metadata: {name: heads}
spec: {backend: sim, sim: {seed: 1}}
---
kind: Pool
metadata: {name: cpu}
spec: {machineType: n2-standard-8, cpuPerHost: 8, memoryPerHost: 32Gi, minReplicas: 4, maxReplicas: 4}
---
kind: Flavor
metadata: {name: cpu}
spec: {pool: cpu}
---
kind: Team
metadata: {name: t}
spec: {displayName: T}
---
kind: PriorityClass
metadata: {name: urgent}
spec: {value: 1000}
---
kind: Queue
metadata: {name: q}
spec:
  team: t
  queueingStrategy: STRATEGY
  preemption: {withinClusterQueue: LowerPriority}
  resourceGroups:
    - coveredResources: [cpu]
      flavors:
        - name: cpu
          resources: [{name: cpu, nominalQuota: 8}]
"""


def _job(name: str, cpu: int, priority: str | None = None) -> TrainJob:
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": {
        "entrypoint": "true", "queue": "q", "gang": {"workers": 1, "resourcesPerWorker": {"cpu": cpu}},
        **({"priorityClass": priority} if priority else {})}})


@pytest.fixture
def fleet_of(tmp_path):
    made = []

    def make(strategy: str):
        (tmp_path / "platform.yaml").write_text(PLATFORM.replace("STRATEGY", strategy))
        config = load_config([tmp_path / "platform.yaml"])
        t = [float(int(time.time()))]
        sim = from_config(config, clock=lambda: t[0])
        sim.up()
        fleet = assemble(config, sim, tmp_path / "data", clock=lambda: t[0], heads_per_queue=2)
        made.append(fleet)
        sim.script_run("hold", runtime=30)
        fleet.submit_job(_job("hold", 6), ADMIN)       # 6 of the queue's 8 cpu, for 30 s
        _passes(fleet, t, 2)
        assert _state(fleet, "hold") == JobState.RUNNING
        for i in range(3):
            t[0] += 0.1
            sim.script_run(f"big-{i}", runtime=1000)
            fleet.submit_job(_job(f"big-{i}", 4), ADMIN)  # waits: 2 cpu free
        t[0] += 0.1
        sim.script_run("small", runtime=1000)
        fleet.submit_job(_job("small", 2), ADMIN)      # fits in the 2 cpu left, behind three big ones
        return fleet, t

    yield make
    for f in made:
        f.close()


def _passes(fleet, t, n: int) -> None:
    for _ in range(n):
        t[0] += 1
        fleet.controller.run_once(t[0])


def _state(fleet, name: str) -> JobState:
    return fleet.store.get("TrainJob", name).doc.status.state


def test_best_effort_fifo_parks_waiting_heads_and_takes_them_up_after_a_release(fleet_of):
    fleet, t = fleet_of("BestEffortFIFO")
    _passes(fleet, t, 1)
    # the heads quota looked at (two of them) say why they wait; the jobs behind keep their message
    assert "cpu on cpu: requests" in fleet.store.get("TrainJob", "big-0").doc.status.message
    assert fleet.store.get("TrainJob", "big-2").doc.status.message.startswith("queued in q")
    assert fleet.queue_view("q")["status"]["pending"] == 4
    _passes(fleet, t, 2)
    assert _state(fleet, "small") in (JobState.ADMITTED, JobState.STARTING, JobState.RUNNING)   # went past the parked heads
    assert "cpu on cpu: requests" in fleet.store.get("TrainJob", "big-2").doc.status.message
    assert [_state(fleet, f"big-{i}") for i in range(3)] == [JobState.QUEUED] * 3
    t[0] += 30   # hold finishes: its quota is released and every queue is read from its head again
    _passes(fleet, t, 2)
    assert _state(fleet, "hold") == JobState.SUCCEEDED
    assert _state(fleet, "big-0") != JobState.QUEUED                # the first head, not big-2
    assert [_state(fleet, f"big-{i}") for i in (1, 2)] == [JobState.QUEUED] * 2


def test_strict_fifo_never_passes_its_head(fleet_of):
    fleet, t = fleet_of("StrictFIFO")
    _passes(fleet, t, 4)
    assert [_state(fleet, n) for n in ("big-0", "big-1", "big-2", "small")] == [JobState.QUEUED] * 4
    assert "blocked behind 'big-0'" in fleet.store.get("TrainJob", "big-1").doc.status.message
    assert fleet.store.get("TrainJob", "small").doc.status.message.startswith("queued in q")  # never a head


def test_decisions_not_stored_are_given_back_to_quota(fleet_of):
    """A pass's decisions are one transaction: if it fails (here a job deleted under it), none is
    stored, quota gives back the admissions the store does not have, and the next pass decides again."""
    from rayfleet.errors import NotFound
    from rayfleet.server import transitions

    fleet, t = fleet_of("BestEffortFIFO")
    c = fleet.controller
    small = fleet.store.get("TrainJob", "small").doc
    result = c.quota.schedule([c.quota.workload(small, ("cpu",))], t[0])
    assert [a.workload_id for a in result.admitted] == ["small"] and c.quota.is_admitted("small")
    ghost = _job("ghost", 1)
    with pytest.raises(NotFound):
        c._write_decisions([(small, transitions.admitted(small, "cpu", "cpu", {})), (ghost, transitions.waiting(ghost, "x"))], t[0])
    assert _state(fleet, "small") == JobState.QUEUED and not c.quota.is_admitted("small")
    _passes(fleet, t, 3)
    assert _state(fleet, "small") in (JobState.ADMITTED, JobState.STARTING, JobState.RUNNING)


def test_a_preempted_job_requeued_behind_the_parked_heads_is_read_again(fleet_of):
    fleet, t = fleet_of("BestEffortFIFO")
    _passes(fleet, t, 3)   # big-0..2 parked, small admitted behind them
    assert _state(fleet, "small") == JobState.RUNNING
    fleet.backend.script_run("late", runtime=1000)
    fleet.submit_job(_job("late", 4), ADMIN)     # a head read in the same pass, behind the victims' places
    fleet.backend.script_run("urgent", runtime=1000)
    fleet.submit_job(_job("urgent", 8, "urgent"), ADMIN)   # preempts hold and small: no quota is released
    _passes(fleet, t, 1)
    assert _state(fleet, "urgent") != JobState.QUEUED
    assert [_state(fleet, n) for n in ("hold", "small")] == [JobState.QUEUED] * 2
    _passes(fleet, t, 2)
    # back in the queue ahead of the cursor: quota looks at them again and says why they wait
    assert "cpu on cpu: requests" in fleet.store.get("TrainJob", "hold").doc.status.message


def _two_queues(tmp_path, per_queue: int, jobs: int):
    from rayfleet.server import transitions
    from rayfleet.server.queue_heads import QueueHeads
    from rayfleet.server.store import Store

    store = Store(tmp_path / "s.db")
    for q in ("a", "b"):
        for i in range(jobs):
            job = TrainJob.model_validate({"metadata": {"name": f"{q}{i}", "uid": f"u-{q}{i}"}, "spec": {
                "entrypoint": "true", "queue": q, "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 1}}}})
            job.status = transitions.submitted(q, 0, 1000.0 + i)
            store.create(job, team="t", now=1000.0 + i)
    return QueueHeads(store, lambda pclass: 0, lambda queue: False, per_queue=per_queue, tree=lambda queue: f"tree-{queue}")


def test_a_queue_whose_heads_all_wait_offers_fewer_and_more_again_as_they_are_admitted(tmp_path):
    from rayfleet.server.queue_heads import MIN_HEADS

    heads = _two_queues(tmp_path, per_queue=8, jobs=20)
    heads.quota_now({}, None)
    first = heads.read()
    assert sorted(h.job.name for h in first if h.group[0] == "a") == sorted(f"a{i}" for i in range(8))
    names = {h.job.name for h in first}
    heads.park(first, names, admitted={"b0", "b1", "b2", "b3", "b4"})   # a: all wait; b: 5 of 8 admitted
    second = heads.read()
    per_queue = {q: [h.job.name for h in second if h.group[0] == q] for q in ("a", "b")}
    assert per_queue["a"] == [f"a{i}" for i in range(8, 8 + MIN_HEADS)]   # the next ones behind, MIN_HEADS of them
    assert len(per_queue["b"]) == 8                                         # 2 x 5 admitted, at most per_queue
    heads.park(second, {h.job.name for h in second}, admitted=set(per_queue["a"]))
    third = heads.read()
    assert len([h for h in third if h.group[0] == "a"]) == 2 * MIN_HEADS   # a's heads were admitted: it offers more


def test_a_release_unparks_only_the_queues_of_its_own_cohort_tree(tmp_path):
    """Quota is shared within a cohort tree only: a release in queue a's tree takes a's parked heads
    up again, and leaves b's (another tree) parked; new quotas in force take up every queue."""
    heads = _two_queues(tmp_path, per_queue=2, jobs=4)
    quotas = object()
    heads.quota_now({"tree-a": 0, "tree-b": 0}, quotas)

    def names() -> list[str]:
        return sorted(h.job.name for h in heads.read())

    first = heads.read()
    assert sorted(h.job.name for h in first) == ["a0", "a1", "b0", "b1"]
    heads.park(first, {h.job.name for h in first})          # quota told all four to wait
    assert names() == ["a2", "a3", "b2", "b3"]               # the jobs behind them come up
    heads.quota_now({"tree-a": 0, "tree-b": 0}, quotas)      # nothing released: still parked
    assert names() == ["a2", "a3", "b2", "b3"]
    heads.quota_now({"tree-a": 1, "tree-b": 0}, quotas)      # a release in a's tree only
    assert names() == ["a0", "a1", "b2", "b3"]
    heads.quota_now({"tree-a": 1, "tree-b": 0}, object())    # new quotas in force: every queue
    assert names() == ["a0", "a1", "b0", "b1"]
