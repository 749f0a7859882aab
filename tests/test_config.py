"""Config files: the shipped configs load, every kind round-trips, and bad input is named precisely."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rayfleet.api import ALL_KINDS, Accelerator, Pool, TrainJob
from rayfleet.config import load_config
from rayfleet.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "cluster_configs").glob("*.yaml"))
LOCAL = ROOT / "cluster_configs" / "local.yaml"


def test_shipped_configs_load():
    assert {p.name for p in SHIPPED} >= {"local.yaml", "gke-example.yaml"}
    for path in SHIPPED:
        cfg = load_config([path])
        assert cfg.pools and cfg.queues and cfg.flavors, path
        assert cfg.cluster is not None


def test_local_config_shape():
    cfg = load_config([LOCAL])
    assert cfg.pools["h100"].spec.max_hosts == 2 and cfg.pools["h100"].spec.accelerators_per_host == 8
    assert cfg.pools["tpu-v5e"].spec.hosts_per_slice == 2
    assert cfg.flavors_for("team-a", Accelerator.H100, {"nvidia.com/gpu": 8}) == ["h100-reserved"]
    assert cfg.flavors_for("team-a", None, {"cpu": 1000}) == ["cpu"]
    assert cfg.priority_value(None) == 100 and cfg.priority_value("production") == 1000


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_kind_round_trips_through_yaml_and_json(path, tmp_path):
    cfg = load_config([path])
    objs = cfg.objects()
    assert {o.KIND for o in objs} >= {"Pool", "Flavor", "Queue", "Cohort", "PriorityClass", "Team", "Cluster"}
    out = tmp_path / "round.yaml"
    out.write_text(yaml.safe_dump_all([o.to_dict() for o in objs], sort_keys=False))
    again = load_config([out])
    assert [o.to_dict() for o in again.objects()] == [o.to_dict() for o in objs]
    for o in objs:
        assert type(o).model_validate(json.loads(json.dumps(o.to_dict()))) == o


def test_workload_kinds_round_trip():
    job = TrainJob.model_validate({
        "metadata": {"name": "bert"},
        "spec": {"trainApp": {"module": "train_apps.ddp_synthetic"}, "queue": "team-a",
                 "gang": {"workers": 2, "resourcesPerWorker": {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": 8},
                          "accelerator": "nvidia-h100-80gb"}, "maxRunDuration": "1h30m"},
    })
    assert job.spec.gang.resources_per_worker == {"cpu": 500, "memory": 2 * 2**30, "nvidia.com/gpu": 8}
    assert job.spec.max_run_duration == 5400
    wire = job.to_dict()
    assert wire["spec"]["gang"]["resourcesPerWorker"] == {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": 8}
    assert TrainJob.model_validate(wire) == job
    svc = ALL_KINDS["Service"].model_validate({
        "metadata": {"name": "llm"}, "spec": {"importPath": "serve_apps.pipeline:app", "queue": "team-c",
        "replicaGroup": {"hostsPerReplica": 2}, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}})
    assert ALL_KINDS["Service"].model_validate(svc.to_dict()) == svc


@pytest.mark.parametrize(
    "topology,machine,chips,hosts",
    [("4x4", "ct5lp-hightpu-4t", 4, 4), ("2x4", "ct6e-standard-8t", 8, 1), ("2x2x2", "ct5p-hightpu-4t", 4, 2), ("2x4", "ct5lp-hightpu-4t", 4, 2)],
)
def test_tpu_hosts_per_slice_derived(topology, machine, chips, hosts):
    acc = {"ct5l": "tpu-v5-lite-podslice", "ct6e": "tpu-v6e-slice", "ct5p": "tpu-v5p-slice"}[machine[:4]]
    pool = Pool.model_validate({"metadata": {"name": "t"}, "spec": {"accelerator": acc, "acceleratorsPerHost": chips,
                                "machineType": machine, "tpuTopology": topology, "maxReplicas": 1}})
    assert pool.spec.hosts_per_slice == hosts


# ------------------------------------------------------------------ invalid inputs

def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(LOCAL.read_text()) if d]


def _find(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _mutate(fn):
    def build(tmp_path: Path) -> Path:
        docs = _docs()
        fn(docs)
        p = tmp_path / "broken.yaml"
        p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return p
    return build


def _raw(text):
    def build(tmp_path: Path) -> Path:
        p = tmp_path / "broken.yaml"
        p.write_text(text)
        return p
    return build


def _set(kind, name, path, value):
    def fn(docs):
        node = _find(docs, kind, name)
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return _mutate(fn)


def _append(doc):
    return _mutate(lambda docs: docs.append(doc))


Q0 = "spec.resourceGroups.0.flavors.1.resources.2"  # team-a, h100-reserved, nvidia.com/gpu

INVALID = [
    ("bad-accelerator-enum", _set("Pool", "h100", "spec.accelerator", "nvidia-k80"), "spec.accelerator", "nvidia-k80"),
    ("negative-quota", _set("Queue", "team-a", f"{Q0}.nominalQuota", -8), f"{Q0}.nominalQuota", "negative"),
    ("wrong-tpu-host-count", _set("Pool", "tpu-v5e", "spec.hostsPerSlice", 4), "spec.hostsPerSlice", "2 hosts x 4 chips"),
    ("tpu-topology-dims", _set("Pool", "tpu-v5e", "spec.tpuTopology", "2x2x2"), "spec.tpuTopology", "2 dimensions"),
    ("tpu-machine-chips", _set("Pool", "tpu-v5e", "spec.acceleratorsPerHost", 8), "spec.acceleratorsPerHost", "4 TPU chips per host"),
    ("flavor-unknown-pool", _set("Flavor", "l4-spot", "spec.pool", "a100"), "spec.pool", "unknown pool 'a100'"),
    ("queue-unknown-flavor", _set("Queue", "team-b", "spec.resourceGroups.0.flavors.1.name", "h200"), "spec.resourceGroups.0.flavors.1.name", "unknown flavor 'h200'"),
    ("queue-unknown-cohort", _set("Queue", "team-b", "spec.cohort", "research"), "spec.cohort", "unknown cohort 'research'"),
    ("queue-unknown-team", _set("Queue", "team-b", "spec.team", "team-z"), "spec.team", "unknown team 'team-z'"),
    ("quota-for-resource-pool-lacks", _set("Queue", "team-b", "spec.resourceGroups.0.flavors.0.resources.2.nominalQuota", 4),
     "spec.resourceGroups.0.flavors.0.resources.2.name", "offers no nvidia.com/gpu"),
    ("duplicate-name", _append({"kind": "Team", "metadata": {"name": "team-a"}}), "metadata.name", "duplicate name"),
    ("cohort-cycle", _mutate(lambda d: d.extend([
        {"kind": "Cohort", "metadata": {"name": "x"}, "spec": {"parent": "y"}},
        {"kind": "Cohort", "metadata": {"name": "y"}, "spec": {"parent": "x"}}])), "spec.parent", "cohort cycle"),
    ("unknown-field", _set("Pool", "l4-spot", "spec.gpuCount", 3), "spec.gpuCount", "unknown field"),
    ("wrong-type", _set("Pool", "l4-spot", "spec.maxReplicas", "many"), "spec.maxReplicas", "integer"),
    ("empty-file", _raw(""), "(file)", "no documents"),
    ("yaml-syntax", _raw("kind: Pool\nmetadata: {name: x\n"), "(yaml)", "YAML syntax error"),
    ("unknown-kind", _append({"kind": "NodePool", "metadata": {"name": "x"}}), "kind", "unknown kind 'NodePool'"),
    ("compute-class-unknown-flavor", _append({"kind": "ComputeClass", "metadata": {"name": "l4"},
        "spec": {"flavors": [{"flavor": "l4-res", "waitForCapacity": "10m"}, {"flavor": "l4-spot"}]}}),
        "spec.flavors.0.flavor", "unknown flavor 'l4-res'"),
    ("lending-above-nominal", _set("Queue", "team-a", f"{Q0}.lendingLimit", 9), f"{Q0}.lendingLimit", "exceeds nominalQuota"),
    ("unknown-resource", _set("Queue", "team-a", f"{Q0}.name", "amd.com/gpu"), f"{Q0}.name", "unknown resource"),
    ("bad-provisioning-mode", _set("Pool", "l4-spot", "spec.provisioning", {"mode": "preemptible"}), "spec.provisioning", "preemptible"),
    ("reservation-without-name", _set("Pool", "h100", "spec.provisioning", {"mode": "reservation"}), "spec.provisioning.reservation.reservationName", "required"),
    ("bad-name", _set("Team", "team-c", "metadata.name", "Team_C"), "metadata.name", "DNS-1123"),
    ("bad-quantity", _set("Pool", "l4-spot", "spec.memoryPerHost", "lots"), "spec.memoryPerHost", "not a quantity"),
    ("min-above-max", _set("Pool", "l4-spot", "spec.minReplicas", 3), "spec.minReplicas", "must not exceed maxReplicas"),
    ("two-default-priorities", _set("PriorityClass", "production", "spec.default", True), "spec.default", "only one priority class"),
    ("bad-window-time", _set("Queue", "team-c", "spec.quotaSchedule", [{"name": "day", "start": "25:00", "end": "18:00",
        "quotas": [{"flavor": "l4-spot", "resource": "nvidia.com/gpu", "nominalQuota": 2}]}]), "spec.quotaSchedule.0.start", "HH:MM"),
    ("schedule-unknown-quota", _set("Queue", "team-c", "spec.quotaSchedule", [{"name": "day", "start": "08:00", "end": "18:00",
        "quotas": [{"flavor": "h100-reserved", "resource": "nvidia.com/gpu", "nominalQuota": 2}]}]), "spec.quotaSchedule.0.quotas.0", "no quota for"),
    ("not-a-mapping", _raw("- just\n- a list\n"), "(document)", "expected a mapping"),
    ("accelerators-on-cpu-pool", _set("Pool", "cpu", "spec.acceleratorsPerHost", 2), "spec.acceleratorsPerHost", "without an accelerator"),
]


@pytest.mark.parametrize("name,build,field,fragment", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_config_names_file_field_and_problem(name, build, field, fragment, tmp_path):
    path = build(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config([path])
    problems = info.value.problems
    match = [p for p in problems if p.field == field]
    assert match, f"no problem for field {field!r}: {[str(p) for p in problems]}"
    assert any(fragment in p.problem for p in match), [str(p) for p in match]
    assert all(p.file == str(path) for p in match)
    assert str(path) in str(info.value) and field in str(info.value)


def test_at_least_twenty_invalid_cases():
    assert len(INVALID) >= 20


def test_errors_name_the_document(tmp_path):
    path = _set("Pool", "h100", "spec.accelerator", "nvidia-k80")(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config([path])
    assert info.value.problems[0].document == "Pool/h100"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "rayfleet.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow  # runs the CLI as a process
def test_cli_config_check_ok_and_broken(tmp_path):
    ok = _cli("config", "check", *map(str, SHIPPED))  # each file is a platform of its own
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("ok ") == len(SHIPPED)
    both = _cli("config", "check", "--together", *map(str, SHIPPED))
    assert both.returncode == 2 and "duplicate name" in both.stderr
    broken = tmp_path / "local.yaml"
    shutil.copy(LOCAL, broken)
    broken.write_text(broken.read_text().replace("spec: {pool: l4-spot}", "spec: {pool: l4-ondemand}"))
    bad = _cli("config", "check", str(broken))
    assert bad.returncode == 2
    assert "unknown pool 'l4-ondemand'" in bad.stderr and "spec.pool" in bad.stderr and str(broken) in bad.stderr
