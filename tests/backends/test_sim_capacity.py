"""The simulated backend's capacity at run time: every provisioning mode, the autoscaler, notices,
faulty hosts and cordons, on a fake clock (exact times and states)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rayfleet.api import PoolSpec, TrainJob
from rayfleet.backends.base import CapacityBackend, HostPhase, LaunchRequest, Notice, NoticeKind, RunState
from rayfleet.backends.sim import SimBackend, from_config, parse_scenario
from rayfleet.config import load_config
from rayfleet.errors import SpecError

T0 = 1000.0


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def l4(provisioning: dict[str, Any] | None = None, **fields: Any) -> PoolSpec:
    body: dict[str, Any] = {"machineType": "g2-standard-8", "accelerator": "nvidia-l4", "acceleratorsPerHost": 1,
                            "cpuPerHost": 8, "memoryPerHost": "32Gi", "maxReplicas": 3, **fields}
    if provisioning is not None:
        body["provisioning"] = provisioning
    return PoolSpec.model_validate(body)


TPU = PoolSpec.model_validate({"machineType": "ct5lp-hightpu-4t", "accelerator": "tpu-v5-lite-podslice", "acceleratorsPerHost": 4,
                               "tpuTopology": "2x4", "cpuPerHost": 112, "memoryPerHost": "192Gi", "maxReplicas": 2, "idleTimeout": 60})


def make(pools: dict[str, PoolSpec], clock: Clock, **kw: Any) -> SimBackend:
    return SimBackend(pools, clock=clock, **kw)


def request(name: str, pool: str, spec: PoolSpec, *, attempt: int = 1, workers: int = 1, strategy: str | None = None,
            tpu: bool = False) -> LaunchRequest:
    gang: dict[str, Any] = {"workers": workers, "resourcesPerWorker": {"google.com/tpu": 4} if tpu else {"nvidia.com/gpu": 1, "cpu": 2}}
    if strategy:
        gang["placementStrategy"] = strategy
    job = TrainJob.model_validate({"metadata": {"name": name}, "spec": {"entrypoint": "python train.py", "queue": "q", "gang": gang}})
    return LaunchRequest.for_job(job, pool, spec, attempt=attempt, checkpoint_dir=None)


def phases(sim: SimBackend, pool: str | None = None) -> dict[str, str]:
    return {h.name: h.phase.value for h in sim.hosts() if pool is None or h.pool == pool}


# ---------------------------------------------------------------- start, grow, shrink

def test_pools_start_at_min_replicas_and_reservations_full():
    clock = Clock()
    od, res = l4(minReplicas=1), l4({"mode": "reservation", "reservationName": "r"})
    sim = make({"od": od, "res": res}, clock)
    assert isinstance(sim, CapacityBackend)
    sim.up()
    cap = sim.capacity()
    assert (cap["od"].hosts, cap["od"].ready_hosts, cap["od"].free_hosts) == (3, 1, 1)
    assert (cap["res"].ready_hosts, cap["res"].free_hosts) == (3, 3)
    assert phases(sim) == {"od-0": "ready", "res-0": "ready", "res-1": "ready", "res-2": "ready"}
    info = {h.name: h for h in sim.hosts()}
    assert info["od-0"].node_id == "sim-od-0-0" and info["od-0"].since == T0 and info["od-0"].expires_at is None and info["od-0"].healthy


def test_initial_hosts_overrides_the_default():
    sim = make({"od": l4(minReplicas=1), "res": l4({"mode": "reservation", "reservationName": "r"})}, Clock())
    sim.pool("od").initial_hosts(3)
    sim.pool("res").initial_hosts(1)
    sim.up()
    assert sim.capacity()["od"].ready_hosts == 3 and sim.capacity()["res"].ready_hosts == 1


def test_pool_grows_for_a_pending_gang_and_shrinks_after_idle_timeout_to_min():
    clock = Clock()
    spec = l4(minReplicas=1, idleTimeout=600)
    sim = make({"od": spec}, clock, provisioning_delay=30)
    sim.up()
    sim.script_run("a", runtime=100)
    sim.script_run("b", runtime=100)
    sim.launch(request("a", "od", spec))
    sim.launch(request("b", "od", spec, workers=2, strategy="STRICT_SPREAD"))
    cap = sim.capacity()["od"]
    assert (cap.ready_hosts, cap.provisioning_hosts) == (1, 2)
    assert phases(sim) == {"od-0": "ready", "od-1": "provisioning", "od-2": "provisioning"}
    assert next(h for h in sim.hosts() if h.name == "od-1").node_id is None
    clock.t = T0 + 29
    assert sim.run_status("b-1").state == RunState.PENDING
    clock.t = T0 + 30
    st = sim.run_status("b-1")
    assert st.state == RunState.RUNNING and st.started_at == T0 + 30 and st.hosts == ("od-1", "od-2")
    assert sim.run_status("a-1").hosts == ("od-0",)
    # a ends at T0+100, b at T0+130: idle 600 s later each host goes, down to minReplicas (1)
    clock.t = T0 + 699
    assert sim.capacity()["od"].ready_hosts == 3
    clock.t = T0 + 700
    assert phases(sim) == {"od-1": "ready", "od-2": "ready"}
    clock.t = T0 + 730
    assert sim.capacity()["od"].ready_hosts == 1
    clock.t = T0 + 99_999
    assert sim.capacity()["od"].ready_hosts == 1


def test_a_pending_gang_keeps_idle_hosts():
    clock = Clock()
    spec = l4(maxReplicas=2, idleTimeout=600)
    sim = make({"od": spec}, clock, provisioning_delay=30)
    sim.pool("od").initial_hosts(1).stockout(until=T0 + 2000)
    sim.up()
    sim.launch(request("g", "od", spec, workers=2, strategy="STRICT_SPREAD"))
    clock.t = T0 + 1999
    cap = sim.capacity()["od"]
    assert (cap.ready_hosts, cap.provisioning_hosts) == (1, 0)   # kept: the pending gang can use it
    clock.t = T0 + 2030
    assert sim.run_status("g-1").state == RunState.RUNNING and sim.run_status("g-1").started_at == T0 + 2030


def test_reservation_keeps_its_idle_hosts():
    clock = Clock()
    sim = make({"res": l4({"mode": "reservation", "reservationName": "r"}, idleTimeout=0)}, clock)
    sim.up()
    clock.t = T0 + 1e6
    assert sim.capacity()["res"].ready_hosts == 3


def test_multi_host_tpu_grows_and_shrinks_by_whole_slices():
    clock = Clock()
    sim = make({"tpu": TPU}, clock, provisioning_delay=10)
    sim.up()
    assert sim.capacity()["tpu"].ready_hosts == 0
    sim.script_run("t", runtime=50)
    sim.launch(request("t", "tpu", TPU, workers=1, tpu=True))   # one host's worth: a whole slice comes
    assert phases(sim) == {"tpu-0-0": "provisioning", "tpu-0-1": "provisioning"}
    clock.t = T0 + 10
    assert sim.run_status("t-1").state == RunState.RUNNING
    clock.t = T0 + 60 + 59     # ended at T0+60; the slice's other host idle since T0+10
    assert sim.capacity()["tpu"].ready_hosts == 2
    clock.t = T0 + 120
    assert sim.capacity()["tpu"].ready_hosts == 0 and phases(sim) == {}


# ---------------------------------------------------------------- queued DWS flex-start

QUEUED = l4({"mode": "dws-flex", "maxRunDuration": 1000, "nodeRecyclingLeadTime": 100}, maxReplicas=4)


def test_queued_dws_gang_hosts_arrive_together():
    clock = Clock()
    sim = make({"dws": QUEUED}, clock, provisioning_delay=100, provisioning_jitter=60, seed=4)
    sim.up()
    sim.script_run("g", runtime=5000)
    sim.launch(request("g", "dws", QUEUED, workers=3, strategy="STRICT_SPREAD"))
    assert sim.capacity()["dws"].provisioning_hosts == 3
    clock.t = T0 + 200
    st = sim.run_status("g-1")
    assert st.state == RunState.RUNNING
    ups = {h.since for h in sim.hosts()}
    assert len(ups) == 1 and st.started_at in ups and T0 + 100 <= st.started_at <= T0 + 160   # one draw, one arrival


def test_queued_dws_request_waits_for_the_stockout_to_end():
    clock = Clock()
    sim = make({"dws": QUEUED}, clock, provisioning_delay=100)
    sim.pool("dws").stockout(until=T0 + 300)
    sim.up()
    sim.launch(request("g", "dws", QUEUED, workers=2, strategy="STRICT_SPREAD"))
    assert sim.capacity()["dws"].provisioning_hosts == 2      # queued, not refused
    clock.t = T0 + 299
    assert sim.run_status("g-1").state == RunState.PENDING and sim.capacity()["dws"].ready_hosts == 0
    clock.t = T0 + 300
    assert sim.run_status("g-1").state == RunState.RUNNING and sim.capacity()["dws"].ready_hosts == 2


def test_queued_dws_request_is_all_or_nothing_and_cancelled_with_its_gang():
    clock = Clock()
    sim = make({"dws": QUEUED}, clock, provisioning_delay=100)
    sim.pool("dws").initial_hosts(2)
    sim.up()
    sim.script_run("busy", runtime=10_000)
    sim.launch(request("busy", "dws", QUEUED, workers=2, strategy="STRICT_SPREAD"))
    sim.launch(request("big", "dws", QUEUED, workers=3, strategy="STRICT_SPREAD"))
    assert sim.capacity()["dws"].provisioning_hosts == 0      # 3 hosts cannot all come (2 slots left): none asked for
    sim.launch(request("two", "dws", QUEUED, workers=2, strategy="STRICT_SPREAD"))
    assert sim.capacity()["dws"].provisioning_hosts == 2
    sim.stop("two-1", reason="resubmit")                       # the controller cancels a request that waits too long
    assert sim.capacity()["dws"].provisioning_hosts == 0 and set(phases(sim)) == {"dws-0", "dws-1"}
    clock.t = T0 + 500
    assert sim.run_status("two-1").state == RunState.STOPPED and sim.capacity()["dws"].ready_hosts == 2


def test_dws_host_recycles_then_goes_at_its_max_run_duration():
    clock = Clock()
    sim = make({"dws": QUEUED}, clock, provisioning_delay=50)
    sim.up()
    sim.script_run("r", runtime=5000)
    sim.launch(request("r", "dws", QUEUED))
    clock.t = T0 + 50
    assert sim.run_status("r-1").state == RunState.RUNNING
    host = next(h for h in sim.hosts() if h.name == "dws-0")
    assert host.expires_at == T0 + 1050 and host.phase == HostPhase.READY
    clock.t = T0 + 949
    assert sim.run_status("r-1").notices == ()
    clock.t = T0 + 950      # lead time 100 before the end: notice, and a replacement asked for
    st = sim.run_status("r-1")
    assert st.state == RunState.RUNNING
    assert [(n.kind, n.host, n.deadline) for n in st.notices] == [(NoticeKind.RECYCLE, "dws-0", T0 + 1050)]
    assert phases(sim) == {"dws-0": "draining", "dws-1": "provisioning"}
    clock.t = T0 + 1000
    assert phases(sim) == {"dws-0": "draining", "dws-1": "ready"}
    clock.t = T0 + 1050
    st = sim.run_status("r-1")
    assert st.state == RunState.LOST and st.finished_at == T0 + 1050 and "maximum run duration" in st.message
    assert phases(sim) == {"dws-1": "ready"}
    sim.launch(request("r", "dws", QUEUED, attempt=2))    # the next attempt lands on the replacement
    assert sim.run_status("r-2").hosts == ("dws-1",)


# ---------------------------------------------------------------- non-queued DWS flex-start

def test_non_queued_dws_stockout_is_answered_at_once():
    clock = Clock()
    spec = l4({"mode": "dws-flex", "queued": False}, maxReplicas=2)
    sim = make({"nq": spec}, clock, provisioning_delay=20)
    sim.pool("nq").stockout(start=T0 + 10, until=T0 + 100)
    sim.up()
    clock.t = T0 + 10
    sim.launch(request("s", "nq", spec))
    st = sim.run_status("s-1")
    assert st.state == RunState.STOCKOUT and st.finished_at == T0 + 10 and "stocked out" in st.message
    assert sim.capacity()["nq"].provisioning_hosts == 0
    clock.t = T0 + 100
    sim.launch(request("s", "nq", spec, attempt=2))
    assert sim.capacity()["nq"].provisioning_hosts == 1
    clock.t = T0 + 120
    assert sim.run_status("s-2").state == RunState.RUNNING


def test_non_queued_dws_uses_free_hosts_during_a_stockout():
    clock = Clock()
    spec = l4({"mode": "dws-flex", "queued": False}, maxReplicas=2)
    sim = make({"nq": spec}, clock)
    sim.pool("nq").initial_hosts(1).stockout(until=T0 + 100)
    sim.up()
    sim.launch(request("a", "nq", spec))
    sim.launch(request("b", "nq", spec))
    assert sim.run_status("a-1").state == RunState.RUNNING and sim.run_status("b-1").state == RunState.STOCKOUT


# ---------------------------------------------------------------- DWS calendar

W0 = datetime(2027, 3, 1, tzinfo=UTC).timestamp()
CAL = l4({"mode": "dws-calendar", "window": {"start": "2027-03-01T00:00:00Z", "end": "2027-03-01T01:00:00Z"}, "drainBefore": 600},
         maxReplicas=2)


def test_calendar_window_opens_drains_and_closes():
    clock = Clock(W0 - 1000)
    sim = make({"cal": CAL}, clock)
    sim.up()
    assert phases(sim) == {}
    sim.script_run("c", runtime=99_999)
    sim.launch(request("c", "cal", CAL))
    assert sim.run_status("c-1").state == RunState.PENDING and sim.capacity()["cal"].provisioning_hosts == 0
    clock.t = W0
    st = sim.run_status("c-1")
    assert st.state == RunState.RUNNING and st.started_at == W0
    assert {(h.name, h.phase, h.expires_at) for h in sim.hosts()} == {("cal-0", HostPhase.READY, W0 + 3600), ("cal-1", HostPhase.READY, W0 + 3600)}
    clock.t = W0 + 2999
    assert sim.run_status("c-1").notices == ()
    clock.t = W0 + 3000
    assert sim.run_status("c-1").notices == (Notice(NoticeKind.WINDOW_END, "cal-0", W0 + 3600, "the DWS calendar window of pool cal ends"),)
    assert phases(sim) == {"cal-0": "draining", "cal-1": "draining"}
    sim.launch(request("late", "cal", CAL))
    assert sim.run_status("late-1").state == RunState.PENDING     # nothing new placed while draining
    clock.t = W0 + 3600
    st = sim.run_status("c-1")
    assert st.state == RunState.LOST and st.finished_at == W0 + 3600 and "calendar window" in st.message
    assert phases(sim) == {} and sim.capacity()["cal"].ready_hosts == 0
    clock.t = W0 + 9999
    assert sim.run_status("late-1").state == RunState.PENDING and sim.capacity()["cal"].provisioning_hosts == 0


def test_calendar_pool_coming_up_inside_its_window_has_its_hosts():
    sim = make({"cal": CAL}, Clock(W0 + 10))
    sim.up()
    assert sim.capacity()["cal"].ready_hosts == 2


# ---------------------------------------------------------------- spot

def test_spot_reclaim_uses_the_pools_notice():
    clock = Clock()
    spec = l4({"mode": "spot", "reclaimNotice": 20}, minReplicas=1)
    sim = make({"spot": spec}, clock)
    sim.up()
    sim.script_run("s", runtime=1000)
    sim.launch(request("s", "spot", spec))
    sim.reclaim("spot-0", at=T0 + 10)
    clock.t = T0 + 10
    st = sim.run_status("s-1")
    assert st.state == RunState.RUNNING and [(n.kind, n.deadline) for n in st.notices] == [(NoticeKind.RECLAIM, T0 + 30)]
    info = sim.hosts()[0]
    assert (info.phase, info.expires_at, info.since) == (HostPhase.DRAINING, T0 + 30, T0 + 10)
    assert sim.capacity()["spot"].cordoned_hosts == 1 and sim.capacity()["spot"].free_hosts == 0
    clock.t = T0 + 29.9
    assert sim.run_status("s-1").state == RunState.RUNNING
    clock.t = T0 + 30
    st = sim.run_status("s-1")
    assert st.state == RunState.LOST and st.finished_at == T0 + 30 and "reclaimed" in st.message and st.notices == ()


# ---------------------------------------------------------------- checkpoints on request

def test_request_checkpoint_saves_now_and_the_next_attempt_resumes_from_it():
    clock = Clock()
    spec = l4(minReplicas=1)
    sim = make({"od": spec}, clock)
    sim.up()
    sim.script_run("k", runtime=1000, checkpoint_every=100)
    sim.launch(request("k", "od", spec))
    clock.t = T0 + 250
    assert sim.run_status("k-1").last_checkpoint_step == 200
    sim.request_checkpoint("k-1")
    assert sim.run_status("k-1").last_checkpoint_step == 250
    sim.request_checkpoint("nope-1")     # no-op
    sim.lose_host("od-0", at=T0 + 260)
    clock.t = T0 + 260
    assert sim.run_status("k-1").state == RunState.LOST and sim.run_status("k-1").last_checkpoint_step == 250
    sim.launch(request("k", "od", spec, attempt=2))
    clock.t = T0 + 261     # the lost host is replaced at once (no delay)
    st = sim.run_status("k-2")
    assert st.state == RunState.RUNNING and st.resumed_from_step == 250
    clock.t = st.started_at + 750
    assert sim.run_status("k-2").state == RunState.SUCCEEDED
    assert "step 250: checkpoint saved (requested)" in sim.logs("k-1")


# ---------------------------------------------------------------- faulty hosts, cordon, repair

def test_runs_on_a_faulty_host_fail_while_the_fault_holds():
    clock = Clock()
    spec = l4(minReplicas=2, maxReplicas=2)
    sim = make({"gpu": spec}, clock)
    sim.up()
    for name in ("a", "b", "c"):
        sim.script_run(name, runtime=1000)
    sim.launch(request("a", "gpu", spec))            # on gpu-0
    sim.fault("gpu-0", start=T0 + 100, until=T0 + 500)
    clock.t = T0 + 104
    assert sim.run_status("a-1").state == RunState.RUNNING
    clock.t = T0 + 105
    st = sim.run_status("a-1")
    assert st.state == RunState.FAILED and st.finished_at == T0 + 105 and st.message.startswith("XID 79 on gpu-0") and st.hosts == ("gpu-0",)
    clock.t = T0 + 200
    sim.launch(request("b", "gpu", spec))            # gpu-0 again: fails 5 s in
    clock.t = T0 + 205
    assert sim.run_status("b-1").state == RunState.FAILED
    clock.t = T0 + 500
    sim.launch(request("c", "gpu", spec))            # the fault window is over
    clock.t = T0 + 600
    assert sim.run_status("c-1").state == RunState.RUNNING


def test_cordon_repair_and_uncordon():
    clock = Clock()
    spec = l4(minReplicas=2, maxReplicas=2)
    sim = make({"gpu": spec}, clock, repair_time=300)
    sim.up()
    sim.script_run("a", runtime=1000)
    sim.script_run("b", runtime=1000)
    sim.launch(request("a", "gpu", spec))            # on gpu-0
    sim.fault("gpu-0", message="XID 48 on gpu-0")     # until the next repair
    sim.set_unhealthy("gpu-0", at=T0 + 1)
    clock.t = T0 + 1
    assert {h.name: h.healthy for h in sim.hosts()} == {"gpu-0": False, "gpu-1": True}
    sim.cordon("gpu-0", "3 failures in 1h")
    sim.cordon("gpu-0", "again")                      # idempotent
    st = sim.run_status("a-1")
    assert st.notices == (Notice(NoticeKind.UNHEALTHY, "gpu-0", None, "3 failures in 1h"),)
    assert phases(sim) == {"gpu-0": "cordoned", "gpu-1": "ready"}
    cap = sim.capacity()["gpu"]
    assert (cap.ready_hosts, cap.free_hosts, cap.cordoned_hosts) == (2, 1, 1)
    sim.launch(request("b", "gpu", spec))
    assert sim.run_status("b-1").hosts == ("gpu-1",)   # nothing new on the cordoned host
    clock.t = T0 + 5                                   # the fault began at T0: a fails 5 s in
    assert sim.run_status("a-1").state == RunState.FAILED
    assert phases(sim)["gpu-0"] == "repairing"         # its last bundle left: repair starts
    assert sim.capacity()["gpu"].ready_hosts == 1
    clock.t = T0 + 304
    assert phases(sim)["gpu-0"] == "repairing"
    clock.t = T0 + 305
    info = next(h for h in sim.hosts() if h.name == "gpu-0")
    assert (info.phase, info.node_id, info.healthy, info.since) == (HostPhase.READY, "sim-gpu-0-1", True, T0 + 305)
    sim.script_run("c", runtime=1000)
    sim.launch(request("c", "gpu", spec))              # the repair cleared the open-ended fault
    clock.t = T0 + 400
    assert sim.run_status("c-1").state == RunState.RUNNING and sim.run_status("c-1").hosts == ("gpu-0",)
    # uncordon returns a host at once, whether cordoned with work on it or already repairing
    sim.cordon("gpu-1", "suspect")
    assert phases(sim)["gpu-1"] == "cordoned"
    sim.uncordon("gpu-1")
    assert phases(sim)["gpu-1"] == "ready" and sim.run_status("b-1").notices == ()
    sim.stop("c-1")
    sim.cordon("gpu-0", "suspect")
    assert phases(sim)["gpu-0"] == "repairing"
    sim.uncordon("gpu-0")
    assert phases(sim)["gpu-0"] == "ready" and sim.capacity()["gpu"].free_hosts == 1
    sim.uncordon("gpu-0")                               # idempotent


def test_a_fault_with_an_open_window_survives_a_repair():
    clock = Clock()
    spec = l4(minReplicas=1, maxReplicas=1)
    sim = make({"gpu": spec}, clock, repair_time=10)
    sim.up()
    sim.fault("gpu-0", until=T0 + 1000)
    sim.cordon("gpu-0", "faulty")
    clock.t = T0 + 10
    sim.script_run("a", runtime=100)
    sim.launch(request("a", "gpu", spec))
    clock.t = T0 + 15
    assert sim.run_status("a-1").state == RunState.FAILED


# ---------------------------------------------------------------- scenario

def test_scenario_faults_unhealthy_and_default_reclaim_notice():
    clock = Clock()
    spot = l4({"mode": "spot", "reclaimNotice": 15}, minReplicas=2)
    scn = parse_scenario({
        "hosts": [{"reclaim": "spot-1", "at": 50}],
        "faults": [{"host": "spot-0", "from": 10, "until": 20, "message": "XID 79 on spot-0", "failAfter": 2}],
        "unhealthy": [{"host": "spot-1", "at": 5}],
    })
    sim = make({"spot": spot}, clock, scenario=scn)
    sim.up()
    sim.script_run("a", runtime=1000)
    sim.launch(request("a", "spot", spot))
    clock.t = T0 + 12
    st = sim.run_status("a-1")
    assert st.state == RunState.FAILED and st.finished_at == T0 + 12 and st.message == "XID 79 on spot-0"
    assert {h.name: h.healthy for h in sim.hosts()} == {"spot-0": True, "spot-1": False}
    clock.t = T0 + 50
    assert next(h for h in sim.hosts() if h.name == "spot-1").expires_at == T0 + 65


@pytest.mark.parametrize("change, field", [
    ({"faults": [{"host": "x", "from": 30, "until": 20}]}, "faults.0.until"),
    ({"faults": [{"host": "x", "hots": 1}]}, "faults.0.hots"),
    ({"faults": [{"host": "x", "failAfter": -1}]}, "faults.0.failAfter"),
    ({"faults": [{"from": 1}]}, "faults.0.host"),
    ({"unhealthy": [{"host": "x"}]}, "unhealthy.0.at"),
    ({"hosts": [{"reclaim": "x", "at": 1, "notice": -5}]}, "hosts.0.notice"),
])
def test_bad_capacity_scenario_fields_are_named(change, field):
    with pytest.raises(SpecError) as e:
        parse_scenario(change, file="scn.yaml")
    assert field in [p.field for p in e.value.problems], e.value.problems


def test_scenario_naming_unknown_fault_hosts_is_refused():
    scn = parse_scenario({"faults": [{"host": "gpu-9"}], "unhealthy": [{"host": "nope", "at": 1}]})
    with pytest.raises(SpecError) as e:
        make({"gpu": l4()}, Clock(), scenario=scn)
    assert [p.field for p in e.value.problems] == ["faults.0.host", "unhealthy.0.host"]


def test_from_config_takes_the_clusters_repair_time(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kind: Cluster\nmetadata: {name: c}\nspec: {backend: sim, hostHealth: {repairTime: 42}}\n---\n"
                   "kind: Pool\nmetadata: {name: cpu}\nspec: {machineType: n2-standard-8, maxReplicas: 1}\n")
    sim = from_config(load_config([cfg]), clock=Clock())
    assert sim.repair_time == 42


def test_the_host_list_is_rebuilt_after_every_change_a_host_shows():
    """``hosts()`` keeps its list while no host changes what it shows (most controller passes)."""
    clock = Clock()
    spec = l4(minReplicas=1, maxReplicas=2, provisioning={"mode": "on-demand"})
    sim = make({"gpu": spec}, clock, provisioning_delay=10, repair_time=300)
    sim.up()
    assert phases(sim) == {"gpu-0": "ready"} == phases(sim)
    sim.script_run("a", runtime=1000)
    sim.script_run("b", runtime=1000)
    sim.launch(request("a", "gpu", spec))
    sim.launch(request("b", "gpu", spec))            # a second host is provisioned
    assert phases(sim) == {"gpu-0": "ready", "gpu-1": "provisioning"}
    clock.t = T0 + 10
    assert phases(sim) == {"gpu-0": "ready", "gpu-1": "ready"}
    sim.cordon("gpu-1", "suspect")
    info = {h.name: h for h in sim.hosts()}
    assert info["gpu-1"].phase == HostPhase.CORDONED and info["gpu-1"].message == "suspect"
    sim.uncordon("gpu-1")
    assert phases(sim)["gpu-1"] == "ready"
    sim.lose_host("gpu-0")                           # gone: no longer listed
    assert phases(sim) == {"gpu-1": "ready"}
