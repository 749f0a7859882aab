"""``rayfleet simulate trace`` (the generated platform and fleet scenario, docs/scale.md) and
``rayfleet simulate fleet --plot`` (through typer's CliRunner: no process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayfleet.api import JobState
from rayfleet.cli import app
from rayfleet.config import load_config
from rayfleet.fleetsim import load_fleet_scenario
from rayfleet.fleetsim.plots import FILES
from rayfleet.fleetsim.scenario import submissions
from rayfleet.fleetsim.trace import generate, load_curve, render
from rayfleet.fleetsim.trace_platform import FAMILIES, SHAPES, size_fleet

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def write(tmp: Path, gpus: int, teams: int, days: float, seed: int) -> tuple[Path, Path]:
    r = runner.invoke(app, ["simulate", "trace", "--gpus", str(gpus), "--teams", str(teams), "--days", str(days),
                            "--seed", str(seed), "-o", str(tmp)])
    assert r.exit_code == 0, r.stderr
    return tmp / "config.yaml", tmp / "scenario.yaml"


def test_same_seed_same_bytes_other_seed_other_trace(tmp_path):
    a = [p.read_bytes() for p in write(tmp_path / "a", 300, 6, 0.5, 7)]
    b = [p.read_bytes() for p in write(tmp_path / "b", 300, 6, 0.5, 7)]
    c = [p.read_bytes() for p in write(tmp_path / "c", 300, 6, 0.5, 8)]
    assert a == b
    assert a[1] != c[1] and a[0] != c[0]   # other team weights (quotas) and another workload


def test_generated_files_load_and_every_submission_passes_admission(tmp_path):
    config_path, scenario_path = write(tmp_path, 300, 6, 0.5, 3)
    cfg = load_config([config_path])
    scenario = load_fleet_scenario(scenario_path)
    subs = submissions(cfg, scenario)    # the control service's own admission checks
    assert len(subs) == len(scenario.jobs) + sum(1 for s in scenario.services if s.spec is not None) > 10
    assert len(cfg.teams) == len(cfg.queues) == 6
    assert {c.spec.parent for c in cfg.cohorts.values()} == {None, "fleet"}
    assert set(cfg.priority_classes) == {"production", "experiment"}
    cc = cfg.compute_classes["l4"]
    assert [(s.flavor, cfg.pools[cfg.flavors[s.flavor].spec.pool].spec.provisioning.mode) for s in cc.spec.flavors] == [
        ("l4-res", "reservation"), ("l4-dws", "dws-flex"), ("l4-spot", "spot")]
    modes = {p: cfg.pools[p].spec.provisioning.mode for p in cfg.pools}
    assert modes == {"t4": "on-demand", "l4-res": "reservation", "l4-dws": "dws-flex", "l4-spot": "spot", "a100-res": "reservation",
                     "h100-dws": "dws-flex", "tpu-v5e": "on-demand", "tpu-v6e": "spot"}


@pytest.mark.parametrize("gpus,teams", [(10000, 100), (2000, 20)])
def test_fleet_size_and_quotas_are_the_shares_asked_for(gpus, teams):
    import random

    fleet = size_fleet(gpus, teams, random.Random(1))
    total = sum(fleet.accelerators(s) for s in SHAPES)
    assert abs(total - gpus) <= 0.02 * gpus
    assert len(fleet.teams) == teams and len({t.name for t in fleet.teams}) == teams
    assert len({t.cohort for t in fleet.teams}) == teams // 10
    # every flavor's whole capacity is given out as nominal quota, by day and (L4 reservation) by night
    for s in SHAPES:
        assert sum(q.get(s.name, 0) for q in fleet.quotas.values()) == fleet.replicas[s.name]
    assert sum(fleet.night.values()) == fleet.replicas["l4-res"]
    serving = [t.queue for t in fleet.teams if t.inference]
    assert len(serving) == teams // 5
    assert sum(fleet.night[q] for q in serving) < sum(fleet.quotas[q]["l4-res"] for q in serving)


def test_workload_has_every_family_both_priorities_gangs_of_1_to_64_and_capacity_events():
    trace = generate(2000, 20, 1.0, 5)
    jobs = trace.scenario["jobs"]
    accelerators = {s.accelerator: s.family for s in SHAPES}
    assert {accelerators[j["gang"]["accelerator"]] for j in jobs} == set(FAMILIES)
    assert {j["priorityClass"] for j in jobs} == {"production", "experiment"}
    sizes = {j["gang"]["workers"] for j in jobs}
    assert min(sizes) == 1 and max(sizes) <= 64 and len(sizes) >= 4
    assert all(j["gang"]["workers"] % 4 == 0 for j in jobs if j["gang"]["accelerator"] == "tpu-v5-lite-podslice")
    runtimes = sorted(j["runtime"] for j in jobs)
    assert runtimes[-1] > 10 * runtimes[len(runtimes) // 2]      # heavy-tailed
    assert all(j["checkpointEvery"] > 0 for j in jobs)
    assert trace.summary["reclaims"] > 0 and trace.summary["faults"] + trace.summary["losses"] > 0
    assert all(e["reclaim"].startswith(("l4-spot-", "tpu-v6e-")) for e in trace.scenario["hosts"] if "reclaim" in e)
    # services follow the daily curve: more replicas at 10:00 than at 03:00
    svc = trace.scenario["services"][0]
    def wanted(hour: float) -> int:
        return [step["replicas"] for step in svc["load"] if step["at"] <= hour * 3600][-1]
    assert load_curve(10) > load_curve(3)
    assert wanted(10) > wanted(3)
    assert {s["spec"]["queue"] for s in trace.scenario["services"]}.isdisjoint(j["queue"] for j in jobs)   # inference teams serve
    assert render(trace) == render(generate(2000, 20, 1.0, 5))


def test_small_trace_runs_through_the_fleet_simulator_with_its_invariants_and_pictures(tmp_path):
    config_path, scenario_path = write(tmp_path, 64, 4, 0.03, 2)
    r = runner.invoke(app, ["simulate", "fleet", "-c", str(config_path), "-s", str(scenario_path), "--json", "--plot", str(tmp_path / "png")])
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    cfg = load_config([config_path])
    scenario = load_fleet_scenario(scenario_path)
    # no job lost: every submission made before the end is in the report
    assert report["stoppedBy"] == "until" and report["seconds"] == 0.03 * 86400
    assert {j["name"] for j in report["jobs"]} == {j.name for j in scenario.jobs if j.at <= report["seconds"]}
    # every job terminal, or still open because the run stopped at `until`; failures say why
    open_states = {s.value for s in JobState if not s.terminal}
    for j in report["jobs"]:
        assert JobState(j["state"]).terminal or j["state"] in open_states
        if j["state"] == "FAILED":
            assert j["reason"] and j["message"]
    assert any(j["flavors"] for j in report["jobs"])
    # never over quota: what the queues hold of a flavor never passes the cohort's nominal quota,
    # and gangs are whole: each flavor's accelerators are held in whole hosts (slices for TPU v5e)
    for flavor in cfg.flavors:
        pool = cfg.pools[cfg.flavors[flavor].spec.pool].spec
        res = pool.accelerator.resource if pool.accelerator else "cpu"
        nominal = sum(q.spec.quotas()[(flavor, res)].nominal_quota for q in cfg.queues.values() if (flavor, res) in q.spec.quotas())
        unit = pool.accelerators_per_host * pool.slice_hosts
        samples = zip(*(report["queues"][q] for q in cfg.queues), strict=True)
        for sample in samples:
            held = [int(s["usage"].get(flavor, {}).get(res, 0)) for s in sample]
            assert sum(held) <= nominal and all(h % unit == 0 for h in held)
    for series in report["pools"].values():
        assert all(0 <= s["acceleratorsInUse"] <= s["acceleratorsMax"] and s["accelerators"] <= s["acceleratorsMax"] for s in series)
    assert any(s["acceleratorsInUse"] for series in report["pools"].values() for s in series)
    for name in FILES:
        data = (tmp_path / "png" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000


@pytest.mark.parametrize("args,option", [
    (["--gpus", "10"], "--gpus"), (["--gpus", "1000000"], "--gpus"), (["--teams", "1"], "--teams"),
    (["--days", "0"], "--days"), (["--days", "nan"], "--days"), (["--days", "31"], "--days"),
])
def test_bad_arguments_exit_2_naming_the_option(tmp_path, args, option):
    r = runner.invoke(app, ["simulate", "trace", "-o", str(tmp_path / "out"), *args])
    assert r.exit_code == 2 and option in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_out_and_plot_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = runner.invoke(app, ["simulate", "trace", "--gpus", "64", "--teams", "2", "--days", "0.01", "-o", str(blocker / "sub")])
    assert r.exit_code == 2 and "--out" in r.stderr
    config_path, scenario_path = write(tmp_path / "t", 64, 2, 0.01, 1)
    r = runner.invoke(app, ["simulate", "fleet", "-c", str(config_path), "-s", str(scenario_path), "--plot", str(blocker / "png")])
    assert r.exit_code == 2 and "--plot" in r.stderr
