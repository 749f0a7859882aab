"""Hierarchical cohorts with quota of their own (Kueue's ``Cohort`` kind with ``resourceGroups``):
the quota a cohort holds is lent to its subtree, reclaim looks for victims level by level up the
preemptor's path and only in subtrees over their quota, and a queue whose request fits in a cohort
on its path reclaims from the subtrees beside it (Kueue's hierarchical advantage), with or
without borrowWithinCohort. The config, the quota layer and the Kueue export agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from quota_helpers import admitted_ids, config, preempted_ids, queue, waiting_ids, wl

from rayfleet.backends.kuberay import crd_schema, kueue
from rayfleet.config import load_config
from rayfleet.errors import ConfigError
from rayfleet.quota import CohortConfig, QuotaState, ResourceQuota
from rayfleet.quota.from_api import from_platform

CPU = ("default", "cpu")
GKE_EXAMPLE = Path(__file__).resolve().parents[2] / "cluster_configs" / "gke-example.yaml"


def _research_and_batch(research_quota: int) -> QuotaState:
    """root -> research (quota of its own) -> queue r (nominal 0, reclaims Any);
    root -> batch (no quota) -> queue b (nominal 2), which borrows whatever is idle."""
    cohorts = (
        CohortConfig("root"),
        CohortConfig("research", parent="root", quotas={CPU: ResourceQuota(research_quota)} if research_quota else {}),
        CohortConfig("batch", parent="root"),
    )
    cfg = config(queue("r", 0, cohort="research", reclaim="Any"), queue("b", 2, cohort="batch"), cohorts=cohorts)
    s = QuotaState(cfg)
    r = s.schedule(0, [wl(f"b-{k}", "b", 2, t=k) for k in range(1, 4)])
    assert admitted_ids(r) == (["b-1", "b-2", "b-3"] if research_quota >= 4 else ["b-1"])
    return s


def test_a_queue_reclaims_its_cohorts_own_quota_from_a_sibling_cohort_that_borrows_it():
    s = _research_and_batch(research_quota=4)
    # b holds 6: its own 2 and research's idle 4, borrowed through root
    assert s.cohort_usage("batch")[CPU] == (6, 2)
    # r has no quota of its own and no borrowWithinCohort, but its request fits in research's
    # quota: it reclaims from batch, the most recent admissions first, as few as it needs
    r = s.schedule(1, [wl("r-1", "r", 4, t=10)])
    assert preempted_ids(r) == ["b-3", "b-2"]
    assert admitted_ids(r) == ["r-1"]
    assert {p.reason.value for p in r.preempted} == {"InCohortReclamation"}
    # b keeps its nominal 2: a queue within its own quota is never reclaimed from
    assert s.cohort_usage("batch")[CPU] == (2, 2)


def test_without_quota_on_its_path_a_queue_that_must_borrow_does_not_preempt():
    s = _research_and_batch(research_quota=0)
    s.submit(wl("b-4", "b", 2, t=4))
    # research holds nothing: r's request would be borrowed from root, which Kueue allows to
    # preempt only under borrowWithinCohort
    r = s.schedule(1, [wl("r-1", "r", 2, t=10)])
    assert preempted_ids(r) == [] and "r-1" in waiting_ids(r)


def test_a_borrower_within_its_own_cohorts_quota_is_not_reclaimed_from():
    cohorts = (CohortConfig("root"), CohortConfig("a", parent="root"), CohortConfig("b", parent="root"), CohortConfig("c", parent="root"))
    cfg = config(queue("a1", 0, cohort="a"), queue("a2", 4, cohort="a"), queue("b1", 4, cohort="b", reclaim="Any"),
                 queue("c1", 0, cohort="c"), cohorts=cohorts)
    s = QuotaState(cfg)
    # c1 borrows b1's idle 4 through root; then a1 borrows a2's idle 4 inside cohort a
    assert admitted_ids(s.schedule(0, [wl("c-1", "c1", 4, t=1)])) == ["c-1"]
    assert admitted_ids(s.schedule(1, [wl("a-1", "a1", 4, t=2)])) == ["a-1"]
    # b1 wants its nominal back. a-1 is the most recent admission and its queue borrows, but its
    # cohort is within its own quota: the victim is c-1, in the subtree that is over its quota
    r = s.schedule(2, [wl("b-1", "b1", 4, t=3)])
    assert preempted_ids(r) == ["c-1"] and admitted_ids(r) == ["b-1"]


def test_a_cohort_lending_limit_bounds_what_leaves_its_subtree():
    cohorts = (CohortConfig("root"), CohortConfig("research", parent="root", quotas={CPU: ResourceQuota(4, None, 1)}),
               CohortConfig("batch", parent="root"))
    cfg = config(queue("r", 2, cohort="research"), queue("b", 0, cohort="batch"), cohorts=cohorts)
    s = QuotaState(cfg)
    # research's subtree holds 6 (its 4 and r's 2); it lends at most 1 of it to root
    r = s.schedule(0, [wl("b-1", "b", 1, t=1), wl("b-2", "b", 1, t=2)])
    assert admitted_ids(r) == ["b-1"] and waiting_ids(r) == ["b-2"]


# ---------------------------------------------------------------- from the config, to Kueue


def _gke_with(tmp_path: Path, cohort_yaml: str) -> Path:
    text = GKE_EXAMPLE.read_text()
    old = "kind: Cohort\nmetadata: {name: ml}\nspec:\n  fairSharing: {weight: 1}\n"
    assert old in text
    path = tmp_path / "platform.yaml"
    path.write_text(text.replace(old, cohort_yaml))
    return path


ORG = """\
kind: Cohort
metadata: {name: org}
spec:
  resourceGroups:
    - coveredResources: [nvidia.com/gpu]
      flavors:
        - name: a100-reserved
          resources: [{name: nvidia.com/gpu, nominalQuota: 8, lendingLimit: 24}]
---
kind: Cohort
metadata: {name: ml}
spec:
  parent: org
  fairSharing: {weight: 1}
  resourceGroups:
    - coveredResources: [nvidia.com/gpu]
      flavors:
        - name: a100-reserved
          resources: [{name: nvidia.com/gpu, nominalQuota: 4, borrowingLimit: 2}]
"""


def test_cohort_resource_groups_load_reach_the_quota_layer_and_export_to_kueue(tmp_path):
    cfg = load_config([_gke_with(tmp_path, ORG)])
    quota = {c.name: c for c in from_platform(cfg).cohorts}
    assert quota["org"].quotas == {("a100-reserved", "nvidia.com/gpu"): ResourceQuota(8, None, 24)}   # a cohort may lend past its own nominal
    assert quota["ml"].quotas == {("a100-reserved", "nvidia.com/gpu"): ResourceQuota(4, 2, None)} and quota["ml"].parent == "org"
    cohorts = {o["metadata"]["name"]: o for o in kueue.kueue_objects(cfg) if o["kind"] == "Cohort"}
    assert cohorts["ml"]["spec"] == {
        "fairSharing": {"weight": 1}, "parentName": "org",
        "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
            {"name": "a100-reserved", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 4, "borrowingLimit": 2}]}]}]}
    assert cohorts["org"]["spec"]["resourceGroups"][0]["flavors"][0]["resources"] == [
        {"name": "nvidia.com/gpu", "nominalQuota": 8, "lendingLimit": 24}]
    for obj in cohorts.values():
        assert crd_schema.validate(obj) == [], obj
    # the cohorts' own GPUs add to their subtrees' capacity: ml holds its 4 and what its queues
    # lend it; org its 8 and what ml lends (all of it: ml has no lending limit)
    s = QuotaState(from_platform(cfg))
    a100 = ("a100-reserved", "nvidia.com/gpu")
    quotas = [q.spec.quotas()[a100] for q in cfg.queues.values() if a100 in q.spec.quotas()]
    lent_by_queues = sum(rq.nominal_quota if rq.lending_limit is None else min(rq.lending_limit, rq.nominal_quota) for rq in quotas)
    assert s.cohort_usage("ml")[a100] == (0, 4 + lent_by_queues)
    assert s.cohort_usage("org")[a100] == (0, 8 + 4 + lent_by_queues)


@pytest.mark.parametrize("doc, field, problem", [
    (ORG.replace("nominalQuota: 8, lendingLimit: 24", "nominalQuota: 8, borrowingLimit: 2"), "spec.resourceGroups.0.flavors.0.resources.0.borrowingLimit",
     "a cohort without a parent has nothing to borrow from"),
    (ORG.replace("- name: a100-reserved\n          resources: [{name: nvidia.com/gpu, nominalQuota: 8", "- name: a100-gone\n          resources: [{name: nvidia.com/gpu, nominalQuota: 8"),
     "spec.resourceGroups.0.flavors.0.name", "unknown flavor 'a100-gone'"),
    (ORG.replace("flavors:\n        - name: a100-reserved\n          resources: [{name: nvidia.com/gpu, nominalQuota: 8", "flavors:\n        - name: cpu\n          resources: [{name: nvidia.com/gpu, nominalQuota: 8"),
     "spec.resourceGroups.0.flavors.0.resources.0.name", "offers no nvidia.com/gpu"),
])
def test_a_bad_cohort_quota_is_named_by_its_field(tmp_path, doc, field, problem):
    with pytest.raises(ConfigError) as e:
        load_config([_gke_with(tmp_path, doc)])
    found = [(p.document, p.field, p.problem) for p in e.value.problems]
    assert any(d == "Cohort/org" and f == field and problem in msg for d, f, msg in found), found
