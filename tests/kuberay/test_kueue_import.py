"""``rayfleet config import-kueue``: Kueue objects in, rayfleet documents out. rayfleet's own
export imports back to the documents it came from (every field both sides know), and a Kueue
setup written for Kueue (v1beta1 names, LocalQueues, node-pool labels) imports with notes for
what rayfleet cannot hold."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from rayfleet.backends.kuberay import kueue
from rayfleet.backends.kuberay.kueue_import import from_kueue
from rayfleet.cli.config_cmd import app
from rayfleet.config import load_config

GKE = Path(__file__).resolve().parents[2] / "cluster_configs" / "gke-example.yaml"
KUEUE_FIELDS = ("team", "cohort", "resourceGroups", "queueingStrategy", "preemption", "flavorFungibility", "fairSharing")


def _pools_only(tmp_path: Path) -> Path:
    """The example's documents Kueue has no object for: the Cluster and its Pools."""
    docs = [d for d in yaml.safe_load_all(GKE.read_text()) if d and d["kind"] in ("Cluster", "Pool")]
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_rayfleets_export_imports_back_to_the_same_documents(gke_cfg):
    objs = kueue.kueue_objects(gke_cfg)
    result = from_kueue([("kueue.yaml", o) for o in objs], gke_cfg.pools.values())
    got = {(d["kind"], d["metadata"]["name"]): d for d in result.docs}
    for q in gke_cfg.queues.values():
        want, back = _norm(q.to_dict()["spec"]), _norm(got[("Queue", q.name)]["spec"])
        assert {k: want.get(k) for k in KUEUE_FIELDS} == {k: back.get(k) for k in KUEUE_FIELDS}, q.name
        assert back.get("computeClass") is None and back.get("quotaSchedule") == []   # rayfleet's own: not in Kueue
    for c in gke_cfg.cohorts.values():
        assert _norm(got[("Cohort", c.name)]["spec"]) == _norm({k: v for k, v in c.to_dict()["spec"].items() if v not in (None, [])})
    for f in gke_cfg.flavors.values():
        assert got[("Flavor", f.name)]["spec"] == {k: v for k, v in f.to_dict()["spec"].items() if v}
    for pc in gke_cfg.priority_classes.values():
        spec = got[("PriorityClass", pc.name)]["spec"]
        assert spec["value"] == pc.spec.value and spec.get("description", "") == pc.spec.description
    teams = {q.spec.team for q in gke_cfg.queues.values()}
    for t in teams:
        ns = gke_cfg.teams[t].spec.namespace
        assert got[("Team", t)].get("spec", {}).get("namespace") == (ns if ns != t else None)


def _norm(spec: dict) -> dict:
    """A document's spec as its model reads it (quantities, weights as numbers)."""
    from rayfleet.api import Cohort, Queue

    kind = Queue if "team" in spec else Cohort
    return kind.model_validate({"metadata": {"name": "x"}, "spec": spec}).to_dict()["spec"]


def test_the_cli_writes_documents_that_load_with_the_pools(gke_cfg, tmp_path):
    kueue_file = tmp_path / "kueue.yaml"
    kueue_file.write_text(yaml.safe_dump_all(kueue.kueue_objects(gke_cfg), sort_keys=False))
    pools = _pools_only(tmp_path)
    out = tmp_path / "imported.yaml"
    r = CliRunner().invoke(app, ["import-kueue", str(kueue_file), "--pools", str(pools), "-o", str(out)])
    assert r.exit_code == 0, r.output
    cfg = load_config([pools, out])
    assert set(cfg.queues) == set(gke_cfg.queues) and set(cfg.cohorts) == set(gke_cfg.cohorts)
    assert cfg.queues["training"].spec.quotas() == gke_cfg.queues["training"].spec.quotas()
    # the notes say what rayfleet derives itself
    assert "admissionChecksStrategy not imported" in r.output


NATIVE = """\
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: l4}
spec:
  nodeLabels: {cloud.google.com/gke-nodepool: l4-pool, cloud.google.com/gke-accelerator: nvidia-l4}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: vision}
spec:
  cohort: research
  namespaceSelector: {}
  resourceGroups:
    - coveredResources: [cpu, memory, nvidia.com/gpu, pods]
      flavors:
        - name: l4
          resources:
            - {name: cpu, nominalQuota: "48"}
            - {name: memory, nominalQuota: 192Gi}
            - {name: nvidia.com/gpu, nominalQuota: 4, borrowingLimit: 4}
            - {name: pods, nominalQuota: 100}
  flavorFungibility: {whenCanBorrow: Borrow, whenCanPreempt: Preempt}
  preemption: {reclaimWithinCohort: Any, withinClusterQueue: LowerPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: LocalQueue
metadata: {name: vision, namespace: team-vision}
spec: {clusterQueue: vision}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: WorkloadPriorityClass
metadata: {name: urgent}
value: 10000
description: pages someone
"""

POOL = """\
kind: Pool
metadata: {name: l4-pool}
spec: {machineType: g2-standard-12, accelerator: nvidia-l4, acceleratorsPerHost: 1, cpuPerHost: 12, memoryPerHost: 48Gi, maxReplicas: 8}
"""


def test_a_kueue_native_setup_imports_with_notes(tmp_path):
    (tmp_path / "kueue.yaml").write_text(NATIVE)
    (tmp_path / "pools.yaml").write_text(POOL)
    out = tmp_path / "imported.yaml"
    r = CliRunner().invoke(app, ["import-kueue", str(tmp_path / "kueue.yaml"), "--pools", str(tmp_path / "pools.yaml"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.read_text())}
    queue = docs[("Queue", "vision")]["spec"]
    assert queue["team"] == "team-vision" and queue["cohort"] == "research"   # v1beta1's cohort; the LocalQueue's namespace
    assert queue["resourceGroups"][0]["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    assert queue["flavorFungibility"] == {"whenCanBorrow": "Borrow", "whenCanPreempt": "Preempt"}
    assert docs[("Flavor", "l4")]["spec"]["pool"] == "l4-pool"
    assert docs[("PriorityClass", "urgent")]["spec"] == {"value": 10000, "description": "pages someone"}
    assert ("Team", "team-vision") in docs
    assert "pods not imported" in r.output and "tolerations not imported" in r.output
    assert docs[("Cohort", "research")] == {"kind": "Cohort", "metadata": {"name": "research"}}   # Kueue makes it by naming it
    cfg = load_config([tmp_path / "pools.yaml", out])
    assert cfg.queues["vision"].spec.quotas()[("l4", "nvidia.com/gpu")].borrowing_limit == 4


def test_anything_else_is_refused_naming_it(tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
    r = CliRunner().invoke(app, ["import-kueue", str(tmp_path / "bad.yaml")])
    assert r.exit_code == 2 and "Deployment/web" in r.output and "not a Kueue object rayfleet imports" in r.output
    (tmp_path / "q.yaml").write_text(NATIVE.replace('nominalQuota: "48"', "nominalQuota: lots"))
    r = CliRunner().invoke(app, ["import-kueue", str(tmp_path / "q.yaml")])
    assert r.exit_code == 2 and "nominalQuota" in r.output


def test_a_cohorts_own_quota_round_trips(gke_cfg):
    from rayfleet.api import Cohort

    co = Cohort.model_validate({"kind": "Cohort", "metadata": {"name": "org-ml"}, "spec": {
        "parent": "org", "fairSharing": {"weight": 0.5},
        "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
            {"name": "a100-reserved", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 4, "borrowingLimit": 2, "lendingLimit": 6}]}]}]}})
    (doc,) = [d for d in from_kueue([("k.yaml", kueue.cohort(co, gke_cfg))]).docs if d["metadata"]["name"] == "org-ml"]
    assert Cohort.model_validate(doc) == co
