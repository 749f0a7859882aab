"""``rayfleet simulate fleet``: the real store, quota, controller and service manager over the sim on
simulated time (through typer's CliRunner: no process), the examples of docs/capacity.md, strict
scenario validation, determinism, and cost by provisioning mode in the report and in /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayfleet.cli import app
from rayfleet.config import load_config
from rayfleet.fleetsim import parse_fleet_scenario, simulate_fleet

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "capacity"
FLEET = EXAMPLES / "fleet.yaml"
CONFIG = load_config([FLEET])
runner = CliRunner()


def run_cli(scenario: Path | str, *extra: str) -> tuple[int, str, str]:
    r = runner.invoke(app, ["simulate", "fleet", "--config", str(FLEET), "--scenario", str(scenario), *extra])
    return r.exit_code, r.stdout, r.stderr


def report_of(name: str, *extra: str) -> dict:
    code, out, err = run_cli(EXAMPLES / f"{name}.yaml", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def job(report: dict, name: str) -> dict:
    return next(j for j in report["jobs"] if j["name"] == name)


def line(report: dict, mode: str, team: str | None = "research") -> dict:
    return next(ln for ln in report["cost"]["lines"] if ln["mode"] == mode and ln["team"] == team)


# ---------------------------------------------------------------- the docs' examples, one per mode


def test_reservation_two_run_the_third_waits_and_idle_hours_are_their_own_line():
    r = report_of("reservation")
    assert r["stoppedBy"] == "until" and r["seconds"] == 4 * 3600
    jobs = {j["name"]: j for j in r["jobs"]}
    assert all(j["state"] == "SUCCEEDED" and j["flavorsTried"] == ["l4-res"] for j in jobs.values())
    assert jobs["res-3"]["waitSeconds"] >= 3500 and jobs["res-1"]["waitSeconds"] < 5
    # 2 reserved hosts x 4 h = 8 host-hours; 3 jobs x ~1 h used; the rest is idle, at 0.70/h
    res = line(r, "reservation")
    idle = next(i for i in r["cost"]["reservationIdle"] if i["pool"] == "l4-res")
    assert idle["reservedHostHours"] == 8.0
    assert idle["usedHostHours"] == pytest.approx(res["hostHours"]) and res["hostHours"] == pytest.approx(3.0, abs=0.01)
    assert idle["idleHostHours"] == pytest.approx(5.0, abs=0.01) and idle["usd"] == pytest.approx(5.0 * 0.70, abs=0.01)
    assert next(ln for ln in r["cost"]["lines"] if ln["mode"] == "reservation-idle")["pool"] == "l4-res"
    # a reservation costs its hosts x hours whoever uses it: the team lines plus the idle line
    assert res["usd"] + idle["usd"] == pytest.approx(8.0 * 0.70, abs=0.01)
    assert r["cost"]["byMode"]["reservation-idle"] == idle["usd"]


def test_spot_job_survives_three_reclaims_as_disruptions_not_restarts():
    r = report_of("spot")
    j = job(r, "spot-train")
    assert j["state"] == "SUCCEEDED" and j["restarts"] == 0 and j["failures"] == 0
    assert j["disruptions"] == 3 and j["disruptionsByKind"] == {"reclaimed": 3}
    assert j["attempts"] == 4 and [a["outcome"] for a in j["flavors"]] == ["Requeued"] * 3 + ["Succeeded"]
    assert [a["stopReason"] for a in j["flavors"]] == ["reclaimed"] * 3 + [None]
    assert all(a["mode"] == "spot" for a in j["flavors"])
    # each reclaim (at 20, 40, 60 min, 30 s notice) hit the host the attempt ran on, and the gang was
    # stopped before the host went: at its checkpoint, or 5 s before the deadline
    for a, reclaim in zip(j["flavors"][:3], (1200, 2400, 3600), strict=True):
        assert reclaim < a["ended"] <= reclaim + 25
    # the pool keeps 3 hosts (minReplicas): the first three attempts start at once on a host still
    # there; the fourth waits for a replacement (2 min)
    assert [a["running"] - a["admitted"] for a in j["flavors"]] == [1.0, 1.0, 1.0, 120.0]
    # resumed from checkpoints: far less than 4 x 90 min of running in all
    assert 90 * 60 <= j["runSeconds"] < 92 * 60
    assert line(r, "spot")["usd"] == pytest.approx(j["costUsd"]) == pytest.approx(j["runSeconds"] / 3600 * 0.28, abs=0.001)


def test_on_demand_waits_out_a_stockout():
    j = job(report_of("on-demand"), "od-train")
    assert j["state"] == "SUCCEEDED" and j["flavorsTried"] == ["l4-od"]
    assert j["firstRunning"] == 20 * 60 + 3 * 60 and j["flavors"][0]["hosts"] == 2   # the stockout, then 3 min to provision


def test_dws_flex_queued_request_is_resubmitted_then_served():
    j = job(report_of("dws-flex-queued"), "dws-train")
    assert j["state"] == "SUCCEEDED" and j["restarts"] == 0
    assert j["flavorsTried"] == ["l4-res", "l4-dws"]
    assert j["disruptionsByKind"] == {"capacity-fallback": 1, "capacity-resubmit": 1}
    res, first, second = j["flavors"]
    assert (res["flavor"], res["admitted"], res["ended"], res["outcome"]) == ("l4-res", 60.0, 180.0, "CapacityFallback")   # 2 min
    # the first request is cancelled and made again after resubmitAfter (10 min); DWS is out of L4s
    assert (first["flavor"], first["ended"], first["stopReason"], first["running"]) == ("l4-dws", 780.0, "resubmit", None)
    # the second is served whole (both hosts) when the stockout ends at 20 min, before another resubmit
    assert (second["flavor"], second["running"], second["hosts"], second["outcome"]) == ("l4-dws", 1200.0, 2, "Succeeded")


def test_dws_flex_non_queued_stockout_moves_to_the_next_step():
    r = report_of("dws-flex-non-queued")
    j = job(r, "flex-train")
    assert j["state"] == "SUCCEEDED" and j["flavorsTried"] == ["l4-flex", "l4-od"]
    assert j["flavors"][0]["runSeconds"] == 0 and j["flavors"][-1]["mode"] == "on-demand"
    # the stockout answer comes at once: the next step in the controller's next pass, no waitForCapacity (5 m)
    assert j["flavors"][0]["ended"] - j["flavors"][0]["admitted"] <= 1.0 and j["flavors"][1]["admitted"] <= 1.0
    assert j["disruptionsByKind"] == {"capacity-fallback": 1}
    assert line(r, "on-demand")["usd"] > 0 and all(ln["mode"] != "dws-flex" for ln in r["cost"]["lines"])


def test_calendar_window_is_booked_capacity_with_its_own_idle_line():
    r = report_of("calendar")
    assert r["start"] == "2026-01-05T05:30:00Z"
    assert all(j["state"] == "SUCCEEDED" for j in r["jobs"])
    early, in_window, late = job(r, "early"), job(r, "in-window"), job(r, "late")
    # held until the window opens at 06:00 (30 min after the start), then on the booked hosts
    assert early["flavorsTried"] == ["l4-cal"] and early["flavors"][0]["admitted"] == 1800.0 and early["firstRunning"] >= 1800
    assert in_window["flavorsTried"] == ["l4-cal"] and in_window["flavors"][0]["hosts"] == 2
    # 15:30 + up to 4 h runs past the drain at 17:50, and it does not checkpoint: not admitted on the window
    assert late["flavorsTried"] == ["l4-od"] and late["flavors"][0]["admitted"] == 10 * 3600.0
    cal = next(i for i in r["cost"]["reservationIdle"] if i["pool"] == "l4-cal")
    assert cal["mode"] == "dws-calendar" and cal["reservedHostHours"] == 12 * 4   # the 12 h window x 4 hosts, inside the 14 h run
    assert cal["usedHostHours"] == pytest.approx(2 + 2 * 4, abs=0.01)           # early 2 h x 1 host, in-window 4 h x 2
    assert cal["idleHostHours"] == pytest.approx(cal["reservedHostHours"] - cal["usedHostHours"], abs=0.001)


def test_l4_path_reservation_full_dws_too_slow_back_to_the_reservation():
    j = job(report_of("snap-l4"), "snap-train")
    assert j["state"] == "SUCCEEDED"
    flavors = [a["flavor"] for a in j["flavors"]]
    assert flavors[0] == "l4-res" and "l4-dws" in flavors and flavors[-1] == "l4-res"
    assert j["flavors"][-1]["running"] >= 50 * 60   # only once the holder freed the reservation
    assert j["disruptionsByKind"].get("capacity-resubmit", 0) >= 1


def test_services_replicas_over_time_follow_load_and_queues_are_sampled():
    r = report_of("services")
    (svc,) = r["services"]
    # 20 requests/s through a scale-up and a scale-down: groups join before traffic and drain before they go
    assert svc["failedRequests"] == 0 and all(s["failedRequests"] == 0 for s in svc["replicas"]) and r["notes"] == []
    running = [(s["t"], s["running"]) for s in svc["replicas"]]
    assert max(n for _, n in running) == 3 and running[-1][1] == 1
    assert any(t >= 3600 and n == 3 for t, n in running)
    assert svc["costUsd"] > 0 and line(r, "on-demand", team="serving")["workload"] == "serve"
    samples = r["queues"]["reserved"]
    assert [s["t"] for s in samples[:3]] == [0.0, 900.0, 1800.0] and samples[-1]["t"] == 3 * 3600
    assert any(s["usage"].get("l4-res", {}).get("nvidia.com/gpu") for s in samples)
    assert r["cost"]["byTeam"].keys() == {"research", "serving"}


def test_a_host_lost_without_notice_fails_the_requests_in_flight_on_it():
    import yaml

    data = yaml.safe_load((EXAMPLES / "services.yaml").read_text())
    data["hosts"] = [{"lose": "l4-od-0", "at": "30m"}]
    r = simulate_fleet(CONFIG, parse_fleet_scenario(data))
    (svc,) = r["services"]
    # one of 2 routed groups goes: its share of 20 req/s x 0.2 s in flight fails (2), the other serves on
    assert svc["failedRequests"] == 2
    at_loss = next(s for s in svc["replicas"] if s["t"] == 1800.0)
    assert (at_loss["running"], at_loss["failedRequests"]) == (1, 2)
    assert [s["failedRequests"] for s in svc["replicas"] if s["t"] < 1800] == [0] * 4
    # without a requestRate no requests are modelled: null, and a note says so
    del data["services"][0]["requestRate"]
    r = simulate_fleet(CONFIG, parse_fleet_scenario(data))
    assert r["services"][0]["failedRequests"] is None and any("failedRequests" in n for n in r["notes"])


# ---------------------------------------------------------------- output, determinism, --until


def test_the_same_inputs_give_byte_identical_json():
    a = run_cli(EXAMPLES / "spot.yaml", "--json")
    b = run_cli(EXAMPLES / "spot.yaml", "--json")
    assert a[0] == 0 and a[1] == b[1]
    assert "uid" not in a[1] and "raysubmit" not in a[1]


def test_until_stops_the_clock_and_the_table_summary_prints():
    r = report_of("spot", "--until", "30m")
    assert r["stoppedBy"] == "until" and r["seconds"] == 1800
    assert job(r, "spot-train")["state"] in ("RUNNING", "QUEUED", "STARTING")
    code, out, err = run_cli(EXAMPLES / "reservation.yaml")
    assert code == 0, err
    assert "Jobs" in out and "res-3" in out and "reservation-idle" in out


def test_many_copies_a_day_of_simulated_time_takes_few_controller_passes():
    sc = parse_fleet_scenario({"until": "1d", "jobs": [
        {"name": "sweep", "count": 40, "every": "20m", "queue": "research", "runtime": "45m", "checkpointEvery": 300,
         "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}]})
    r = simulate_fleet(CONFIG, sc)
    # event-driven: a day in far fewer passes than the real controller's 86400 one-second ticks
    assert r["controllerPasses"] < 3000
    assert r["seconds"] == 86400 and len(r["jobs"]) == 40 and r["summary"]["byState"] == {"SUCCEEDED": 40}


# ---------------------------------------------------------------- strict validation: exit 2 with the field path


@pytest.mark.parametrize("body, field", [
    ("jobs: [{name: a, queue: nope}]", "jobs.0.queue"),
    ("jobs: [{name: a, queue: spot, gang: {workers: 0}}]", "jobs.0.gang.workers"),
    ("jobs: [{name: a, queue: spot, gang: {workers: 9, resourcesPerWorker: {nvidia.com/gpu: 1}}}]", "jobs.0.gang"),
    ("jobs: [{name: a, queue: spot, runtme: 5}]", "jobs.0.runtme"),
    ("jobs: [{name: a, queue: spot, priorityClass: vip}]", "jobs.0.priorityClass"),
    ("jobs: [{name: a, queue: spot}, {name: a, queue: spot}]", "jobs.1.name"),
    ("hosts: [{lose: no-such-host, at: 5}]", "hosts.0.lose"),
    ("pools: {nope: {initialHosts: 1}}", "pools.nope"),
    ("services: [{name: s, at: 5}]", "services.0.spec"),
    ("services: [{name: s, spec: {importPath: 'a:b', queue: spot, replicaGroup: {hostsPerReplica: 99}}}]", "services.0.spec.replicaGroup"),
    ("until: -5", "until"),
    ("colour: blue", "colour"),
])
def test_a_bad_field_is_exit_2_naming_its_path(tmp_path, body, field):
    p = tmp_path / "bad.yaml"
    p.write_text(body + "\n")
    code, out, err = run_cli(p)
    assert code == 2, (out, err)
    assert field in err and "Traceback" not in err + out


def test_bad_until_and_unreadable_files_are_exit_2(tmp_path):
    code, _, err = run_cli(EXAMPLES / "spot.yaml", "--until", "soon")
    assert code == 2 and "--until" in err
    code, _, err = run_cli(tmp_path / "missing.yaml")
    assert code == 2 and "missing.yaml" in err
    (tmp_path / "list.yaml").write_text("- 1\n")
    code, _, err = run_cli(tmp_path / "list.yaml")
    assert code == 2 and "mapping" in err


# ---------------------------------------------------------------- /metrics: cost by mode, reservation idle


def test_metrics_expose_cost_by_team_and_mode_prices_and_reservation_idle(tmp_path):
    from fastapi.testclient import TestClient

    from rayfleet.api import TrainJob
    from rayfleet.backends.sim import SimBackend
    from rayfleet.fleetsim.driver import ADMIN, SimClock
    from rayfleet.server.app import create_app
    from rayfleet.server.main import assemble
    from rayfleet.server.tokens import ensure_tokens

    clock = SimClock(1_767_571_200.0)  # 2026-01-05T00:00:00Z
    sim = SimBackend({p: CONFIG.pools[p].spec for p in CONFIG.pools}, clock=clock)
    sim.script_run("m", runtime=3600)
    sim.up()
    fleet = assemble(CONFIG, sim, tmp_path, clock=clock)
    creds = ensure_tokens(fleet.store, CONFIG)
    try:
        fleet.submit_job(TrainJob.model_validate({"metadata": {"name": "m"}, "spec": {
            "entrypoint": "python t.py", "queue": "reserved",
            "gang": {"workers": 1, "resourcesPerWorker": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 1}}}}), ADMIN)
        for _ in range(2):
            fleet.controller.run_once(clock.t)
        clock.t += 1800
        fleet.controller.run_once(clock.t)
        with TestClient(create_app(fleet, start_controller=False)) as api:
            text = api.get("/metrics", headers={"Authorization": f"Bearer {creds['admin']}"}).text
    finally:
        fleet.close()
    values = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln and not ln.startswith("#")}
    used = values['rayfleet_cost_usd_total{mode="reservation",team="research"}']
    assert used == pytest.approx(1800 / 3600 * 0.70, rel=0.01)
    # 2 reserved hosts x 1800 s, less the 1800 host-seconds the job used
    assert values['rayfleet_reservation_idle_host_seconds_total{pool="l4-res"}'] == pytest.approx(1800, abs=2)
    idle = values['rayfleet_reservation_idle_usd_total{pool="l4-res"}']
    assert idle == pytest.approx(0.35, abs=0.001)
    assert values['rayfleet_cost_usd_total{mode="reservation-idle",team=""}'] == pytest.approx(idle)
    assert values['rayfleet_flavor_price_usd_per_host_hour{flavor="l4-spot",mode="spot",pool="l4-spot"}'] == 0.28
    assert not any(k.startswith("rayfleet_reservation_idle_usd_total") and "l4-cal" in k for k in values)  # window not open yet
