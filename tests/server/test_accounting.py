"""Cost per team: training gangs from their run segments, services from the replica groups quota
granted them (admitted -> released / preempted / deleted), and the /metrics families built on them."""

from __future__ import annotations

import pytest

from rayfleet.api import Service
from rayfleet.server.accounting import service_cost, service_host_seconds
from rayfleet.server.store import Event, Store


def svc(min_r: int = 1, hosts: int = 2) -> Service:
    return Service.model_validate({"metadata": {"name": "chat"}, "spec": {
        "importPath": "serve_apps.pipeline_mlp:app", "queue": "team-c",
        "replicaGroup": {"hostsPerReplica": hosts, "resourcesPerHost": {"nvidia.com/gpu": 1}},
        "autoscaling": {"minReplicas": min_r, "maxReplicas": 4}}})


def ev(ts: float, type_: str, workload: str = "", flavor: str = "l4-spot") -> Event:
    data = {"workload": workload, "flavor": flavor} if workload else {}
    return Event(int(ts * 10), ts, "Service", "chat", type_, "", data)


def test_a_service_is_charged_for_the_groups_it_held_while_it_held_them(fleet):
    cfg = fleet.config
    events = [
        ev(0, "Submitted"),
        ev(0, "Admitted", "svc.chat.base"),
        ev(10, "Admitted", "svc.chat.1"),
        ev(20, "Admitted", "svc.chat.2"),
        ev(30, "Preempted", "svc.chat.2"),     # reclaimed by a lender
        ev(40, "Released", "svc.chat.1"),      # load went away
        ev(100, "Deleted"),
    ]
    # base: 1 group x 2 hosts x 100 s; group 1: 2 hosts x 30 s; group 2: 2 hosts x 10 s
    assert service_host_seconds(cfg, svc(), events, now=500) == {"l4-spot": pytest.approx(200 + 60 + 20)}
    host_s, usd = service_cost(cfg, svc(), events, now=500)
    assert host_s == pytest.approx(280) and usd == pytest.approx(280 / 3600 * 0.29)


def test_the_base_workload_holds_min_replicas_groups_and_losing_it_stops_the_charge(fleet):
    events = [ev(0, "Admitted", "svc.chat.base", flavor="h100-reserved"), ev(5, "Admitted", "svc.chat.3", flavor="h100-reserved"),
              ev(50, "Preempted", "svc.chat.base")]
    # base 3 groups x 1 host x 50 s + group 3 x 1 host x 45 s; nothing after the base is preempted
    assert service_host_seconds(fleet.config, svc(min_r=3, hosts=1), events, now=1000) == {"h100": pytest.approx(150 + 45)}
    # still running: charged up to now
    assert service_host_seconds(fleet.config, svc(min_r=1, hosts=1), events[:1], now=60) == {"h100": pytest.approx(60)}


def test_all_events_reads_a_long_history_whole(tmp_path):
    store = Store(tmp_path / "s.db")
    for i in range(7):
        store.add_event("Service", "chat", "Admitted", f"e{i}", {"i": i})
    store.add_event("Service", "other", "Admitted", "x")
    got = store.all_events("Service", "chat", page=3)
    assert [e.data["i"] for e in got] == list(range(7))
    store.close()


def test_metrics_split_team_cost_into_training_and_serving(api, team_a, admin, fleet):
    r = api.post("/api/v1/services", headers=team_a, json={"metadata": {"name": "chat"}, "spec": {
        "importPath": "serve_apps.pipeline_mlp:app", "queue": "team-a",
        "replicaGroup": {"hostsPerReplica": 1, "resourcesPerHost": {"nvidia.com/gpu": 8}}}})
    assert r.status_code == 201, r.text
    fleet.store.add_event("Service", "chat", "Admitted", "admitted on h100-reserved", {"workload": "svc.chat.base", "flavor": "h100-reserved"},
                          uid=r.json()["metadata"]["uid"])
    text = api.get("/metrics", headers=admin).text
    line = next(ln for ln in text.splitlines() if ln.startswith("rayfleet_team_cost_usd_total{") and 'workload="serve"' in ln)
    assert 'team="team-a"' in line and float(line.rsplit(" ", 1)[1]) > 0
    assert any(ln.startswith('rayfleet_team_serve_host_seconds_total{team="team-a"}') for ln in text.splitlines())


def test_only_pools_that_pay_when_idle_have_reserved_hours():
    """Accounting's reserved hours follow capacity.provisioning.pays_when_idle, mode by mode: all the
    time for a reservation, inside the window for a calendar booking, never for the others."""
    from pathlib import Path

    from rayfleet.capacity import provisioning
    from rayfleet.config import load_config
    from rayfleet.server.accounting import reserved_host_seconds

    cfg = load_config([Path(__file__).resolve().parents[2] / "examples" / "capacity" / "fleet.yaml"])
    day = 1_767_571_200.0  # 2026-01-05T00:00:00Z; l4-cal's window is 06:00 to 18:00 that day
    got = {name: reserved_host_seconds(p.spec, day, day + 86400) for name, p in cfg.pools.items()}
    assert {n for n, v in got.items() if v is not None} == {n for n, p in cfg.pools.items() if provisioning.pays_when_idle(p.spec)}
    assert got == {"l4-res": 2 * 86400, "l4-cal": 4 * 12 * 3600, "l4-dws": None, "l4-flex": None, "l4-spot": None, "l4-od": None}
    assert reserved_host_seconds(cfg.pools["l4-cal"].spec, day, day + 6 * 3600) == 0.0   # before the window opens
