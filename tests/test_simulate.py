"""``rayfleet quota simulate``: the YAML-reading simulator and its CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayfleet.cli.quota_cmd import app
from rayfleet.errors import SpecError
from rayfleet.simulate import parse_time, simulate

CONFIG = """
kind: Pool
metadata: {name: h100}
spec: {accelerator: nvidia-h100-80gb, acceleratorsPerHost: 8, machineType: a3-highgpu-8g, cpuPerHost: 200, memoryPerHost: 1800Gi, maxReplicas: 4}
---
kind: Pool
metadata: {name: cpu}
spec: {machineType: n2-standard-8, cpuPerHost: 8, memoryPerHost: 32Gi, maxReplicas: 4}
---
kind: Flavor
metadata: {name: h100}
spec: {pool: h100}
---
kind: Flavor
metadata: {name: cpu}
spec: {pool: cpu}
---
kind: Cohort
metadata: {name: ml}
---
kind: PriorityClass
metadata: {name: production}
spec: {value: 1000}
---
kind: PriorityClass
metadata: {name: experiment}
spec: {value: 100, default: true}
---
kind: Team
metadata: {name: research}
---
kind: Team
metadata: {name: inference}
---
kind: Queue
metadata: {name: research}
spec:
  team: research
  cohort: ml
  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: Any}
  resourceGroups:
    - coveredResources: [cpu, memory, nvidia.com/gpu]
      flavors:
        - name: h100
          resources:
            - {name: cpu, nominalQuota: 64}
            - {name: memory, nominalQuota: 512Gi}
            - {name: nvidia.com/gpu, nominalQuota: NOMINAL_A}
        - name: cpu
          resources:
            - {name: cpu, nominalQuota: 16}
            - {name: memory, nominalQuota: 64Gi}
            - {name: nvidia.com/gpu, nominalQuota: 0}
---
kind: Queue
metadata: {name: inference}
spec:
  team: inference
  cohort: ml
  preemption: {reclaimWithinCohort: Any}
  resourceGroups:
    - coveredResources: [cpu, memory, nvidia.com/gpu]
      flavors:
        - name: h100
          resources:
            - {name: cpu, nominalQuota: 64}
            - {name: memory, nominalQuota: 512Gi}
            - {name: nvidia.com/gpu, nominalQuota: 16}
  quotaSchedule:
    - name: nights-for-training
      days: [mon, tue, wed, thu, fri]
      start: "20:00"
      end: "08:00"
      timezone: Europe/Paris
      quotas:
        - {flavor: h100, resource: nvidia.com/gpu, nominalQuota: 0}
"""

WORKLOADS = """
now: 2026-03-02T10:00:00Z   # a Monday, 11:00 in Paris
admitted:
  - id: exp-old
    queue: research
    flavor: h100
    order: 1
    workers: 1
    resourcesPerWorker: {cpu: 8, memory: 64Gi, nvidia.com/gpu: 8}
  - id: exp-new
    queue: research
    flavor: h100
    order: 2
    workers: 1
    resourcesPerWorker: {cpu: 8, memory: 64Gi, nvidia.com/gpu: 8}
pending:
  - id: serve-llm
    queue: inference
    priorityClass: production
    created: 2026-03-02T09:59:00Z
    accelerator: nvidia-h100-80gb
    runtime: 5m
    podSets:
      - {count: 2, resources: {cpu: 16, memory: 128Gi, nvidia.com/gpu: 8}}
  - id: prep
    queue: research
    created: 2026-03-02T09:58:00Z
    workers: 2
    resourcesPerWorker: {cpu: 4, memory: 8Gi}
  - id: huge
    queue: research
    created: 2026-03-02T09:57:00Z
    workers: 4
    resourcesPerWorker: {cpu: 8, memory: 64Gi, nvidia.com/gpu: 8}
"""


@pytest.fixture
def files(tmp_path: Path):
    def make(nominal_a: int = 8, workloads: str = WORKLOADS) -> tuple[Path, Path]:
        cfg = tmp_path / f"config-{nominal_a}.yaml"
        cfg.write_text(CONFIG.replace("NOMINAL_A", str(nominal_a)))
        wl = tmp_path / "workloads.yaml"
        wl.write_text(workloads)
        return cfg, wl

    return make


def _cycle(out: dict, k: int = 0) -> dict:
    return out["cycles"][k]


def test_simulate_admits_preempts_and_explains(files):
    cfg, wl = files()
    out = simulate([cfg], wl)
    c = _cycle(out)
    assert out["start"] == "2026-03-02T10:00:00Z"
    # serve-llm needs 16 GPUs of inference's nominal 16, lent to research's exp-new (research
    # borrows 8 above its 8): reclaimed, newest first; prep fits on the CPU flavor.
    assert {a["workload"]: a["flavor"] for a in c["admitted"]} == {"serve-llm": "h100", "prep": "cpu"}
    assert [(p["workload"], p["reason"], p["preemptor"]) for p in c["preempted"]] == [("exp-new", "InCohortReclamation", "serve-llm")]
    serve = [a for a in c["admitted"] if a["workload"] == "serve-llm"][0]
    assert serve["usage"] == {"cpu": 32, "memory": "256Gi", "nvidia.com/gpu": 16}
    assert serve["preempted"] == ["exp-new"]
    waiting = {w["workload"]: w for w in c["waiting"]}
    assert set(waiting) == {"huge"}
    assert out["queues"]["research"]["pending"] == 2  # huge, and the victim, requeued for the next cycle
    huge = waiting["huge"]
    assert huge["position"] == 0
    assert "more than the queue can ever get" in huge["reason"]
    assert huge["blocking"][0] == {"flavor": "h100", "resource": "nvidia.com/gpu", "requested": 32, "available": 0}
    assert out["queues"]["inference"]["usage"] == {"h100": {"cpu": 32, "memory": "256Gi", "nvidia.com/gpu": 16}}
    assert out["queues"]["research"]["usage"]["h100"]["nvidia.com/gpu"] == 8
    # the final state, in the config's units (cores, GiB, GPUs), never millicores or bytes
    final = out["final"]
    assert [(a["workload"], a["flavor"]) for a in final["admitted"]] == [("exp-old", "h100"), ("serve-llm", "h100"), ("prep", "cpu")]
    assert final["admitted"][2]["usage"] == {"cpu": 8, "memory": "16Gi"}
    assert {w["workload"]: w["code"] for w in final["waiting"]} == {"huge": "ExceedsQuota", "exp-new": "Queued"}
    assert "requests 32, more than the queue can ever get (24)" in huge["reason"]


def test_quota_change_before_applying_it(files):
    # Today's state under a smaller research quota and nothing pending: what would be reclaimed?
    workloads = WORKLOADS.split("pending:")[0] + "pending: []\n"
    cfg, wl = files(nominal_a=0, workloads=workloads)
    out = simulate([cfg], wl, at=parse_time("2026-03-02T21:00:00Z"))  # 22:00 in Paris: inference lends nothing
    c = _cycle(out)
    # the state loaded is over the quota in force: it says so (nothing shrank during the run)
    assert [(p["workload"], p["reason"]) for p in c["preempted"]] == [("exp-new", "OverQuota"), ("exp-old", "OverQuota")]
    assert all(p["preemptor"] is None and "over the quota in force" in p["message"] for p in c["preempted"])
    assert out["final"]["admitted"] == [] and {w["workload"]: w["code"] for w in out["final"]["waiting"]} == {"exp-new": "Queued", "exp-old": "Queued"}
    # At 11:00 inference's 16 GPUs are lendable: the same change reclaims nothing.
    out = simulate([cfg], wl)
    assert _cycle(out)["preempted"] == []
    assert out["queues"]["research"]["borrowed"] == {"h100": {"nvidia.com/gpu": 16}}
    assert out["queues"]["inference"]["lent"] == {"h100": {"nvidia.com/gpu": 16}}


def test_quota_schedule_at_night(files):
    cfg, wl = files()
    night = simulate([cfg], wl, at=parse_time("2026-03-02T20:30:00Z"))  # 21:30 in Paris
    c = _cycle(night)
    assert "serve-llm" not in {a["workload"] for a in c["admitted"]}
    assert any(w["workload"] == "serve-llm" for w in c["waiting"])


def test_cycles_with_runtimes(files):
    cfg, wl = files()
    out = simulate([cfg], wl, cycles=3, step=180)
    assert [c["time"] for c in out["cycles"]] == ["2026-03-02T10:00:00Z", "2026-03-02T10:03:00Z", "2026-03-02T10:06:00Z"]
    # serve-llm runs 5 minutes: released before the third cycle, which readmits exp-new.
    assert out["cycles"][1]["released"] == []
    assert out["cycles"][2]["released"] == ["serve-llm"]
    assert [a["workload"] for a in out["cycles"][2]["admitted"]] == ["exp-new"]


def test_same_inputs_same_output(files):
    cfg, wl = files()
    assert simulate([cfg], wl, cycles=2) == simulate([cfg], wl, cycles=2)


def test_cli_prints_json(files):
    cfg, wl = files()
    result = CliRunner().invoke(app, ["simulate", "--config", str(cfg), "--workloads", str(wl), "--at", "2026-03-02T10:00:00Z", "--cycles", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["cycles"]) == 2
    assert {a["workload"] for a in out["cycles"][0]["admitted"]} == {"serve-llm", "prep"}


@pytest.mark.parametrize(
    ("workloads", "needle"),
    [
        ("pending:\n  - {id: x, queue: research, workers: 1, resourcesPerWorker: {cpu: 1}, colour: red}\n", "pending.0.colour: unknown field"),
        ("pending:\n  - {id: x, queue: research, priorityClass: gold, workers: 1, resourcesPerWorker: {cpu: 1}}\n", "pending.0.priorityClass"),
        ("pending:\n  - {id: x, queue: research}\n", "podSets"),
        ("admitted:\n  - {id: x, queue: research, flavor: tpu, workers: 1, resourcesPerWorker: {cpu: 1}}\n", "admitted.0.flavor"),
        ("pending:\n  - {id: x, queue: research, workers: 1, resourcesPerWorker: {cpu: lots}}\n", "cpu"),
    ],
)
def test_bad_workloads_file_names_the_field(files, workloads, needle):
    cfg, wl = files(workloads=workloads)
    with pytest.raises(SpecError) as err:
        simulate([cfg], wl)
    assert needle in str(err.value)
    result = CliRunner().invoke(app, ["simulate", "--config", str(cfg), "--workloads", str(wl)])
    assert result.exit_code == 2
    assert needle in result.output


def test_registered_in_the_main_cli(files):
    from rayfleet.cli import app as main_app

    cfg, wl = files()
    result = CliRunner().invoke(main_app, ["quota", "simulate", "-c", str(cfg), "-w", str(wl)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cycles"][0]["preempted"][0]["workload"] == "exp-new"


def test_cli_rejects_a_bad_time(files):
    cfg, wl = files()
    result = CliRunner().invoke(app, ["simulate", "--config", str(cfg), "--workloads", str(wl), "--at", "yesterday"])
    assert result.exit_code == 2
    assert "not a time" in result.output


def test_unknown_queue_waits_with_reason(files):
    cfg, wl = files(workloads="pending:\n  - {id: x, queue: nope, workers: 1, resourcesPerWorker: {cpu: 1}}\n")
    c = _cycle(simulate([cfg], wl, at=0))
    assert c["waiting"][0]["reason"] == "queue 'nope' does not exist"
