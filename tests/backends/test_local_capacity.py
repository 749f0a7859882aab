"""Capacity that comes and goes on the local backend.

Fast tests (no processes): the hosts ``up()`` starts, stockouts and provisioning delays, scripted
events, pending-gang demand, which hosts a request starts, and the checkpoint-notice module.
Slow tests (on the session's shared cluster, ``pools_backend`` in tests/conftest.py: pools ``grow`` and
``spot``, a scripted provisioning delay): a pool
growing from minReplicas for a gang and shrinking after its idle time; a spot reclaim with notice
where the run's last checkpoint is the one taken at the notice and the host is gone at the deadline.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from rayfleet.api import Cluster, ClusterSpec, ObjectMeta, PoolSpec
from rayfleet.api.cluster import LocalBackendSpec
from rayfleet.api.pool import DwsFlexProvisioning, ReservationProvisioning, SpotProvisioning
from rayfleet.backends.base import HostPhase, LaunchRequest, NoticeKind, RunState
from rayfleet.backends.local import LocalBackend
from rayfleet.backends.local_capacity import (
    due_events,
    hosts_to_start,
    initial_hosts,
    lifetime_due,
    pending_gang,
    plan_hosts,
    ready_at,
    stockout_windows,
)
from rayfleet.backends.rundir import CHECKPOINT_REQUEST_ENV, RunDir
from rayfleet.backends.sim.scenario import parse_scenario
from rayfleet.train import notice

CPU = dict(machine_type="n2-standard-8", cpu_per_host=8)
TPU = dict(accelerator="tpu-v5-lite-podslice", accelerators_per_host=4, machine_type="ct5lp-hightpu-4t", tpu_topology="2x4", cpu_per_host=112)


# ---------------------------------------------------------------- pure parts


def test_up_starts_min_replicas_all_of_a_reservation_and_whole_slices():
    pools = {
        "cpu": PoolSpec(**CPU, min_replicas=1, max_replicas=3),
        "res": PoolSpec(**CPU, min_replicas=0, max_replicas=2, provisioning=ReservationProvisioning(mode="reservation", reservation_name="r")),
        "tpu": PoolSpec(**TPU, min_replicas=1, max_replicas=2),
    }
    plans = plan_hosts(pools)
    assert initial_hosts(pools, plans, None, now=0) == ["cpu-0", "res-0", "res-1", "tpu-0-0", "tpu-0-1"]
    scenario = parse_scenario({"pools": {"cpu": {"initialHosts": 2}, "tpu": {"initialHosts": 3}}})
    # initialHosts of a multi-host TPU pool rounds up to whole slices
    assert initial_hosts(pools, plans, scenario, now=0) == ["cpu-0", "cpu-1", "res-0", "res-1", "tpu-0-0", "tpu-0-1", "tpu-1-0", "tpu-1-1"]


def test_a_request_in_a_stockout_waits_for_its_end_then_the_delay():
    scenario = parse_scenario({"pools": {"p": {"provisioningDelay": 5, "stockouts": [{"from": 10, "until": 20}, {"from": 20, "until": 30}]}}})
    windows = stockout_windows(scenario, "p", t0=1000.0)
    assert windows == [(1010.0, 1020.0), (1020.0, 1030.0)]
    assert ready_at(1005.0, 5, windows) == 1010.0   # before the window: just the delay
    assert ready_at(1015.0, 5, windows) == 1035.0   # chained windows, then the delay
    assert ready_at(1030.0, 5, windows) == 1035.0   # a window ends at `until`
    assert stockout_windows(scenario, "other", 0.0) == []


def test_scenario_events_come_once_at_their_time():
    scenario = parse_scenario({"hosts": [{"at": 5, "reclaim": "spot-0", "notice": 12}, {"at": 9, "lose": "spot-1"}]})
    assert due_events(scenario, 100.0, 104.9, []) == []
    [(i, ev)] = due_events(scenario, 100.0, 105.0, [])
    assert (i, ev.reclaim, ev.notice) == (0, "spot-0", 12)
    assert [e.lose for _, e in due_events(scenario, 100.0, 120.0, [0])] == ["spot-1"]
    assert due_events(None, 0.0, 1e9, []) == []


def test_a_placing_gang_is_demand_for_the_hosts_it_takes():
    spec = PoolSpec(**CPU, max_replicas=4)
    req = {"run_id": "j-1", "pool": "p", "workers": 3, "resources_per_worker": {"cpu": 1000}, "train_app": None,
           "plan": {"strategy": "STRICT_SPREAD", "tpu_slice": None}}
    g = pending_gang(req, {"phase": "placing"}, 0, spec)
    assert (g.run_id, g.pool, g.hosts) == ("j-1", "p", 3)
    assert pending_gang(req, {"phase": "running"}, 0, spec) is None
    packed = {**req, "plan": {"strategy": "PACK", "tpu_slice": None}}
    assert pending_gang(packed, {"phase": "placing"}, 0, spec).hosts == 1  # 3 x 1 CPU fit one 8-CPU host
    train = {**req, "train_app": "train_apps.ddp_synthetic"}
    assert pending_gang(train, {"phase": "placing"}, 3, spec) is None   # every worker runs: placed


def test_a_request_starts_the_pinned_slice_first_then_by_index():
    pools = {"tpu": PoolSpec(**TPU, max_replicas=3)}
    plans = plan_hosts(pools)
    g = pending_gang({"run_id": "t-1", "pool": "tpu", "workers": 2, "resources_per_worker": {"google.com/tpu": 4}, "train_app": None,
                      "plan": {"strategy": "STRICT_SPREAD", "tpu_slice": "tpu-2"}}, {"phase": "placing"}, 0, pools["tpu"])
    assert g.hosts == 2 and g.tpu_slice == "tpu-2"
    assert hosts_to_start(plans, {"tpu-0-0", "tpu-0-1"}, 2, [g]) == ["tpu-2-0", "tpu-2-1"]
    assert hosts_to_start(plans, {"tpu-0-0", "tpu-0-1"}, 4, []) == ["tpu-1-0", "tpu-1-1", "tpu-2-0", "tpu-2-1"]


def test_notice_counts_each_request_once(tmp_path, monkeypatch):
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    monkeypatch.setenv(CHECKPOINT_REQUEST_ENV, str(rd.checkpoint_request_path))
    notice.reset()
    assert not notice.checkpoint_requested()
    assert rd.request_checkpoint("reclaim") == 1
    assert notice.checkpoint_requested() and notice.checkpoint_requested()  # until consumed
    notice.consume()
    assert not notice.checkpoint_requested()
    assert rd.request_checkpoint("again") == 2
    assert notice.checkpoint_requested()
    # another run's request file: its own count
    other = RunDir(tmp_path / "other")
    other.path.mkdir()
    monkeypatch.setenv(CHECKPOINT_REQUEST_ENV, str(other.checkpoint_request_path))
    assert not notice.checkpoint_requested()
    monkeypatch.delenv(CHECKPOINT_REQUEST_ENV)
    assert notice.request_file() is None and not notice.checkpoint_requested()


def test_sigterm_asks_for_a_checkpoint_instead_of_ending_the_process():
    notice.reset()
    old = signal.getsignal(signal.SIGTERM)
    try:
        assert notice.install_sigterm_handler()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert notice.checkpoint_requested()
        notice.consume()
        assert not notice.checkpoint_requested()
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigterm_handler_is_refused_off_the_main_thread():
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(notice.install_sigterm_handler()))
    t.start()
    t.join()
    assert out == [False]


def test_hosts_attribute_is_the_capacity_backend_method(tmp_path):
    from rayfleet.backends.base import CapacityBackend

    b = LocalBackend({"p": PoolSpec(**CPU, max_replicas=1)}, tmp_path)
    assert isinstance(b, CapacityBackend)
    assert b.hosts() == [] and list(b.host_plans) == ["p-0"]   # down: no host exists


def test_a_scenario_naming_an_unknown_host_is_refused(tmp_path):
    from rayfleet.errors import SpecError

    path = tmp_path / "s.yaml"
    path.write_text("hosts:\n- {at: 1, reclaim: nope-0}\n")
    cluster = Cluster(metadata=ObjectMeta(name="c"), spec=ClusterSpec(local=LocalBackendSpec(scenario=str(path))))
    with pytest.raises(SpecError) as e:
        LocalBackend({"p": PoolSpec(**CPU, max_replicas=1)}, tmp_path, cluster=cluster)
    assert "hosts.0.reclaim" in str(e.value)


def test_a_dws_host_is_recycled_its_lead_time_before_its_run_time_ends_then_goes():
    spec = PoolSpec(**CPU, min_replicas=1, max_replicas=2, provisioning=DwsFlexProvisioning(
        mode="dws-flex", max_run_duration=3600, node_recycling_lead_time=600))
    assert lifetime_due(spec, 1000.0, 1000.0 + 2999) is None
    assert lifetime_due(spec, 1000.0, 1000.0 + 3000) == ("recycle", 4600.0)
    assert lifetime_due(spec, 1000.0, 4600.0) == ("expire", 4600.0)
    no_lead = PoolSpec(**CPU, max_replicas=1, provisioning=DwsFlexProvisioning(mode="dws-flex", max_run_duration=3600))
    assert lifetime_due(no_lead, 0.0, 3599.0) is None and lifetime_due(no_lead, 0.0, 3600.0) == ("expire", 3600.0)
    spot = PoolSpec(**CPU, max_replicas=1, provisioning=SpotProvisioning(mode="spot"))
    assert lifetime_due(spot, 0.0, 10 * 86400.0) is None  # spot hosts end by reclaim, not on a schedule


# ---------------------------------------------------------------- real Ray

def _wait(cond, timeout_s: float, what: str, step: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.mark.slow
def test_pool_grows_from_min_replicas_for_a_gang_and_shrinks_after_its_idle_time(pools_backend):
    b = pools_backend
    assert {h.name: h.phase for h in b.hosts() if h.pool in ("grow", "spot")} == {"grow-0": HostPhase.READY, "spot-0": HostPhase.READY}
    cap = b.capacity()["grow"]
    assert (cap.hosts, cap.ready_hosts, cap.provisioning_hosts) == (2, 1, 0)
    req = LaunchRequest(job_id="wide", attempt=1, pool="grow", pool_spec=b.pools["grow"], workers=2,
                        resources_per_worker={"cpu": 1000}, accelerator=None, placement_strategy="STRICT_SPREAD",
                        entrypoint="echo spread; sleep 1")
    asked = time.time()
    b.launch(req)
    prov = _wait(lambda: next((h for h in b.hosts() if h.name == "grow-1"), None), 30, "grow-1 to be asked for")
    assert prov.phase == HostPhase.PROVISIONING
    assert b.capacity()["grow"].provisioning_hosts == 1
    s = _wait(lambda: (lambda s: s if s.state.terminal else None)(b.run_status("wide-1")), 90, "the gang to finish")
    assert s.state == RunState.SUCCEEDED, b.logs("wide-1")[-2000:]
    assert set(s.hosts) == {"grow-0", "grow-1"}, (s.node_ids, b._state["hosts"])   # STRICT_SPREAD: one bundle on each, the new one included
    up = _wait(lambda: next((h for h in b.hosts() if h.name == "grow-1" and h.phase == HostPhase.READY), None), 10, "grow-1 ready")
    assert up.since - asked >= b.scenario.pools["grow"].provisioning_delay > 0   # the scripted delay ran before its node started
    # idle for idleTimeout (3 s): given back, down to minReplicas (1)
    # (both hosts went idle together: either may go)
    _wait(lambda: b.capacity()["grow"].ready_hosts == 1 and len([h for h in b.hosts() if h.pool == "grow"]) == 1, 30, "a grow host to be given back")
    time.sleep(3.5)   # one more idleTimeout (3 s)
    assert len([h for h in b.hosts() if h.pool == "grow"]) == 1   # never below minReplicas


@pytest.mark.slow
def test_spot_reclaim_notice_checkpoint_now_and_the_host_gone_at_the_deadline(pools_backend):
    b = pools_backend
    req = LaunchRequest(job_id="spotty", attempt=1, pool="spot", pool_spec=b.pools["spot"], workers=1,
                        resources_per_worker={"cpu": 1000}, accelerator=None, placement_strategy=None,
                        train_app="train_apps.ddp_synthetic",
                        train_config={"steps": 100000, "checkpoint_every": 100000, "step_sleep_s": 0.02, "batch_size": 8})
    b.launch(req)
    rid = req.run_id
    _wait(lambda: b.run_status(rid).state == RunState.RUNNING, 240, "the training to run")
    time.sleep(1)
    assert b.run_status(rid).last_checkpoint_step is None   # no periodic checkpoint in reach
    deadline = b.reclaim_host("spot-0")   # the pool's reclaimNotice: 8 s
    s = b.run_status(rid)
    assert [(n.kind, n.host, n.deadline) for n in s.notices] == [(NoticeKind.RECLAIM, "spot-0", deadline)]
    assert s.hosts == ("spot-0",) and s.state == RunState.RUNNING
    assert {h.name: h.phase for h in b.hosts()}["spot-0"] == HostPhase.DRAINING
    assert b.capacity()["spot"].cordoned_hosts == 1 and b.capacity()["spot"].free_hosts == 0
    b.request_checkpoint(rid)   # what the controller does with the notice
    step = _wait(lambda: b.run_status(rid).last_checkpoint_step, deadline - time.time(), "the checkpoint taken at the notice")
    assert 0 < step < 100000
    assert time.time() < deadline
    s = _wait(lambda: (lambda s: s if s.state.terminal else None)(b.run_status(rid)), deadline - time.time() + 30, "the run to end with its host")
    assert s.state == RunState.LOST and time.time() >= deadline
    assert s.last_checkpoint_step == step   # the next attempt resumes from the notice's checkpoint
    assert "spot-0" not in {h.name for h in b.hosts()}
    assert b.capacity()["spot"].ready_hosts == 0
