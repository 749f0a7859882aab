"""The scheduling policies of ``rayfleet simulate fleet --policy`` (fleetsim/policies.py,
docs/scale.md): the pure transformation of the platform, and a small trace (64 accelerators, 43
simulated minutes) through each policy with its invariants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayfleet.api import JobState
from rayfleet.cli import app
from rayfleet.config import cross_check, load_config
from rayfleet.fleetsim import POLICIES, apply_policy, load_fleet_scenario
from rayfleet.fleetsim.figures import percentile, start_estimates
from rayfleet.fleetsim.trace import generate, render
from rayfleet.server.queue_heads import HEADS_PER_QUEUE

runner = CliRunner()
ACCEL = ("nvidia.com/gpu", "google.com/tpu")


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("trace")
    config_text, scenario_text = render(generate(64, 4, 0.03, 2))
    (out / "config.yaml").write_text(config_text)
    (out / "scenario.yaml").write_text(scenario_text)
    return out / "config.yaml", out / "scenario.yaml"


def test_each_policy_is_the_transformation_it_says(trace):
    cfg = load_config([trace[0]])
    assert any(q.spec.cohort for q in cfg.queues.values()) and any(q.spec.quota_schedule for q in cfg.queues.values())
    assert len(cfg.compute_classes["l4"].spec.flavors) == 3
    before = {n: q.model_dump() for n, q in cfg.queues.items()}

    static = apply_policy(cfg, "static")
    assert static.heads_per_queue == HEADS_PER_QUEUE and not static.config.cohorts
    assert all(q.spec.cohort is None and not q.spec.quota_schedule for q in static.config.queues.values())
    steps = static.config.compute_classes["l4"].spec.flavors
    assert [s.flavor for s in steps] == ["l4-res"] and steps[0].wait_for_capacity is None
    # nominal quotas, preemption within the queue and flavor order are the team's own: kept
    for n, q in static.config.queues.items():
        assert q.spec.quotas() == cfg.queues[n].spec.quotas() and q.spec.preemption == cfg.queues[n].spec.preemption

    kueue = apply_policy(cfg, "kueue")
    assert kueue.heads_per_queue == 1 and kueue.config.cohorts == cfg.cohorts and not kueue.config.compute_classes
    for n, q in kueue.config.queues.items():
        assert q.spec.cohort == cfg.queues[n].spec.cohort and q.spec.quotas() == cfg.queues[n].spec.quotas()
        assert not q.spec.quota_schedule and q.spec.compute_class is None

    rayfleet = apply_policy(cfg, "rayfleet")
    assert rayfleet.config is cfg and rayfleet.heads_per_queue == HEADS_PER_QUEUE and rayfleet.changes == ()
    for p in (static, kueue):
        assert cross_check(p.config) == [] and p.changes
    assert {n: q.model_dump() for n, q in cfg.queues.items()} == before   # the given config is untouched
    with pytest.raises(ValueError, match="unknown policy"):
        apply_policy(cfg, "fifo")


def _run(trace, *args: str) -> dict:
    r = runner.invoke(app, ["simulate", "fleet", "-c", str(trace[0]), "-s", str(trace[1]), "--json", *args])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def _held(sample: dict, flavor: str, res: str) -> int:
    return int(sample["usage"].get(flavor, {}).get(res, 0))


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_keeps_the_invariants(trace, policy):
    report = _run(trace, "--policy", policy)
    cfg = load_config([trace[0]])
    scenario = load_fleet_scenario(trace[1])
    assert report["policy"]["name"] == policy
    # no job lost; every job terminal, or open because the run stopped at `until`; failures say why
    assert report["stoppedBy"] == "until"
    assert {j["name"] for j in report["jobs"]} == {n for e in scenario.jobs if e.at <= report["seconds"] for n in e.names()}
    for j in report["jobs"]:
        assert JobState(j["state"]).terminal or report["stoppedBy"] == "until"
        if j["state"] == "FAILED":
            assert j["reason"] and j["message"]
    borrowed = False
    for flavor in cfg.flavors:
        pool = cfg.pools[cfg.flavors[flavor].spec.pool].spec
        res = pool.accelerator.resource if pool.accelerator else "cpu"
        unit = pool.accelerators_per_host * pool.slice_hosts
        nominal = {q.name: (quota.nominal_quota if (quota := q.spec.quotas().get((flavor, res))) else 0) for q in cfg.queues.values()}
        for sample in zip(*(report["queues"][q] for q in cfg.queues), strict=True):
            held = {q: _held(s, flavor, res) for q, s in zip(cfg.queues, sample, strict=True)}
            # never over quota (the fleet's nominal), gangs whole (whole hosts, whole slices)
            assert sum(held.values()) <= sum(nominal.values()) and all(h % unit == 0 for h in held.values())
            borrowed |= any(h > nominal[q] for q, h in held.items())
    # static: no queue ever holds more than its own nominal quota; the others borrow on this trace
    assert borrowed == (policy != "static")
    figs = report["figures"]
    assert 0 < figs["utilisationWhileBacklog"]["overall"] <= 1 and figs["utilisationWhileBacklog"]["samplesWithBacklog"] > 0
    g = figs["goodput"]
    assert 0 <= g["usefulAcceleratorHours"] <= g["heldAcceleratorHours"] and g["heldAcceleratorHours"] > 0
    assert set(figs["waitSeconds"]) <= {"production", "experiment"} and sum(w["jobs"] for w in figs["waitSeconds"].values()) == len(report["jobs"])
    assert figs["costByTeam"] == report["cost"]["byTeam"] and figs["reservationIdleHostHours"] >= 0
    assert figs["preemptions"] == sum(j["disruptionsByKind"].get("preempted", 0) for j in report["jobs"])
    # the estimated starts' figure counts each job whose first wait got an estimate once
    e = figs["startEstimates"]
    first = [j["firstEstimate"] for j in report["jobs"] if j["firstEstimate"] is not None]
    assert e["judged"] + e["withoutTime"] + e["notAdmitted"] == len(first) and 0 <= e["within"] <= e["judged"]
    assert all(f["seen"] >= j["submitted"] for j in report["jobs"] if (f := j["firstEstimate"]) is not None)
    assert all(j["firstAdmitted"] is None or j["firstAdmitted"] >= j["submitted"] for j in report["jobs"])


def test_the_estimate_figure_judges_the_first_estimate_against_the_first_admission():
    def job(submitted, start, admitted):
        return {"submitted": submitted, "firstAdmitted": admitted,
                "firstEstimate": None if start == "none" else {"seen": submitted, "start": start}}
    report = {"jobs": [
        job(0, 1000, 1200),      # waited 1,000 s as estimated, admitted 200 s late: within 25%
        job(0, 1000, 1300),      # 300 s late: outside
        job(100, 130, 180),      # a short wait: the 60 s floor holds it
        job(0, 400, None),       # never admitted: not judged
        job(0, None, 50),        # a reason, no time
        job(0, "none", 10),      # never told to wait: not counted at all
    ]}
    e = start_estimates(report)
    assert (e["judged"], e["within"], e["withoutTime"], e["notAdmitted"]) == (3, 2, 1, 1)
    assert e["share"] == pytest.approx(2 / 3, abs=1e-4) and e["errorSecondsP50"] == 200 and e["errorSecondsP90"] == 300
    assert start_estimates({"jobs": []})["share"] is None


def test_policy_all_reports_each_policy_on_the_same_scenario_and_a_bad_policy_is_exit_2(trace):
    reports = _run(trace, "--policy", "all", "--until", "20m")
    assert list(reports) == list(POLICIES)
    assert len({json.dumps([j["name"] for j in r["jobs"]]) for r in reports.values()}) == 1
    assert [r["policy"]["headsPerQueue"] for r in reports.values()] == [HEADS_PER_QUEUE, 1, HEADS_PER_QUEUE]
    table = runner.invoke(app, ["simulate", "fleet", "-c", str(trace[0]), "-s", str(trace[1]), "--policy", "all", "--until", "5m"])
    assert table.exit_code == 0 and "goodput" in table.stdout and all(p in table.stdout for p in POLICIES)
    bad = runner.invoke(app, ["simulate", "fleet", "-c", str(trace[0]), "-s", str(trace[1]), "--policy", "fifo"])
    assert bad.exit_code == 2 and "--policy" in bad.stderr


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0, 2.0], 50) == 2.0 and percentile(list(map(float, range(1, 101))), 99) == 99.0
