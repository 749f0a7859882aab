"""Kueue v1beta2 export and GKE ComputeClass objects from the GKE example config."""

from __future__ import annotations

import json

import pydantic
import pytest

from rayfleet.api.queue import FlavorFungibility
from rayfleet.backends.kuberay import compute_class as ccm
from rayfleet.backends.kuberay import crd_schema, kueue
from rayfleet.config import PlatformConfig


def _by(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


@pytest.fixture(scope="module")
def objs(gke_cfg):
    return kueue.kueue_objects(gke_cfg)


def test_clusterqueues_carry_cohort_limits_preemption_and_weights(objs):
    cqs = _by(objs, "ClusterQueue")
    assert set(cqs) == {"training", "inference", "research"}
    training = cqs["training"]["spec"]
    assert training["cohortName"] == "ml"
    assert training["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "team-training"}}
    flavors = {f["name"]: {r["name"]: r for r in f["resources"]} for f in training["resourceGroups"][0]["flavors"]}
    assert flavors["a100-reserved"]["nvidia.com/gpu"] == {"name": "nvidia.com/gpu", "nominalQuota": 16, "lendingLimit": 8}
    assert flavors["h100-flex"]["nvidia.com/gpu"]["borrowingLimit"] == 16
    assert flavors["a100-reserved"]["memory"]["nominalQuota"] == "1200Gi"
    assert training["resourceGroups"][0]["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu", "google.com/tpu"]
    # production queues reclaim lent quota and may preempt experiments (priority <= 100) while borrowing
    assert training["preemption"] == {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any",
                                      "borrowWithinCohort": {"policy": "LowerPriority", "maxPriorityThreshold": 100}}
    assert training["flavorFungibility"] == {"whenCanBorrow": "TryNextFlavor", "whenCanPreempt": "TryNextFlavor"}
    assert training["fairSharing"] == {"weight": 2}
    research = cqs["research"]["spec"]
    assert research["fairSharing"] == {"weight": "500m"}
    assert research["preemption"]["reclaimWithinCohort"] == "Never"
    assert research["flavorFungibility"]["whenCanBorrow"] == "MayStopSearch"  # rayfleet's Borrow


def test_dws_flavors_get_a_provisioning_request_admission_check(objs):
    training = _by(objs, "ClusterQueue")["training"]["spec"]
    assert training["admissionChecksStrategy"] == {"admissionChecks": [{"name": "dws-h100-flex", "onFlavors": ["h100-flex"]}]}
    assert "admissionChecksStrategy" not in _by(objs, "ClusterQueue")["research"]["spec"]
    prc = _by(objs, "ProvisioningRequestConfig")["dws-h100-flex"]["spec"]
    assert prc["provisioningClassName"] == "queued-provisioning.gke.io"
    assert prc["managedResources"] == ["nvidia.com/gpu"]
    assert prc["parameters"] == {"maxRunDurationSeconds": str(3 * 86400)}
    check = _by(objs, "AdmissionCheck")["dws-h100-flex"]["spec"]
    assert check["controllerName"] == "kueue.x-k8s.io/provisioning-request"
    assert check["parameters"]["name"] == "dws-h100-flex"


def test_resource_flavors_hold_pool_node_labels_and_tolerations(objs):
    rfs = _by(objs, "ResourceFlavor")
    assert len(rfs) == 10
    spot = rfs["l4-spot"]["spec"]
    assert spot["nodeLabels"]["cloud.google.com/gke-spot"] == "true"
    assert {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in spot["tolerations"]
    v5e = rfs["tpu-v5e-4x4"]["spec"]["nodeLabels"]
    assert v5e["cloud.google.com/gke-tpu-accelerator"] == "tpu-v5-lite-podslice"
    assert v5e["cloud.google.com/gke-tpu-topology"] == "4x4"
    assert rfs["a100-reserved"]["spec"]["nodeLabels"]["cloud.google.com/reservation-name"] == "a100-training-res"
    assert "tolerations" not in rfs["cpu"]["spec"]


def test_local_queues_priority_classes_and_cohorts(objs):
    lqs = _by(objs, "LocalQueue")
    assert lqs["inference"]["metadata"]["namespace"] == "team-inference"
    assert lqs["inference"]["spec"] == {"clusterQueue": "inference"}
    wpcs = _by(objs, "WorkloadPriorityClass")
    assert {n: o["value"] for n, o in wpcs.items()} == {"production": 1000, "standard": 500, "experiment": 100}
    assert _by(objs, "Cohort")["ml"]["spec"] == {"fairSharing": {"weight": 1}}


def test_every_kueue_object_validates(objs):
    for obj in objs:
        assert crd_schema.validate(obj) == [], obj["metadata"]["name"]


def test_borrowing_limit_without_cohort_is_refused(gke_cfg):
    cfg = PlatformConfig(**{k: dict(v) for k, v in vars(gke_cfg).items() if isinstance(v, dict)}, cluster=gke_cfg.cluster)
    q = cfg.queues["training"].model_copy(deep=True)
    q.spec.cohort = None
    cfg.queues["training"] = q
    with pytest.raises(ValueError, match="borrowing limit only in a cohort"):
        kueue.cluster_queue(q, cfg)


def test_flavor_fungibility_preference_is_exported(gke_cfg):
    q = gke_cfg.queues["training"].model_copy(deep=True)
    assert q.spec.flavor_fungibility.when_can_borrow.value == "TryNextFlavor" and q.spec.flavor_fungibility.when_can_preempt.value == "TryNextFlavor"
    q.spec.flavor_fungibility.preference = "PreemptionOverBorrowing"
    cq = kueue.cluster_queue(q, gke_cfg)
    assert cq["spec"]["flavorFungibility"] == {"whenCanBorrow": "TryNextFlavor", "whenCanPreempt": "TryNextFlavor", "preference": "PreemptionOverBorrowing"}
    assert crd_schema.validate(cq) == []


def test_a_preference_needs_both_policies_try_next_flavor():
    with pytest.raises(pydantic.ValidationError, match="preference: can only be set when both whenCanBorrow and whenCanPreempt are TryNextFlavor"):
        FlavorFungibility.model_validate({"whenCanBorrow": "Borrow", "whenCanPreempt": "TryNextFlavor", "preference": "PreemptionOverBorrowing"})


# ---------------------------------------------------------------- ComputeClass


def test_compute_class_priorities_follow_the_fallback_order(gke_cfg):
    (cc,) = ccm.compute_classes(gke_cfg)
    assert cc["apiVersion"] == "cloud.google.com/v1" and cc["metadata"]["name"] == "l4-serving"
    res, flex, spot = cc["spec"]["priorities"]
    assert res["reservations"] == {"affinity": "Specific", "specific": [{"name": "l4-serving-res"}]}
    assert res["gpu"] == {"type": "nvidia-l4", "count": 1} and res["machineType"] == "g2-standard-12"
    assert flex["flexStart"] == {"enabled": True, "nodeRecycling": {"leadTimeSeconds": 3600}}
    assert flex["maxRunDurationSeconds"] == 7 * 86400
    assert spot["spot"] is True
    assert cc["spec"]["whenUnsatisfiable"] == "DoNotScaleUp"
    assert json.loads(cc["metadata"]["annotations"][ccm.ANN_WAIT]) == {"l4-reserved": "120s", "l4-flex": "600s", "l4-spot": "indefinitely"}
    assert crd_schema.validate(cc) == []


def test_compute_class_tpu_calendar_and_on_demand_priorities(gke_cfg):
    spec = gke_cfg.pools["tpu-v5p-2x2x2"].spec
    with pytest.raises(ValueError, match="needs provisioning.reservationName"):
        ccm.priority_for("tpu-v5p-2x2x2", spec, node_recycling=False)  # AnyBestEffort would make nodes outside the window
    named = spec.model_copy(update={"provisioning": spec.provisioning.model_copy(
        update={"reservation_name": "v5p-calendar", "reservation_project": "ml-capacity"})})
    v5p = ccm.priority_for("tpu-v5p-2x2x2", named, node_recycling=False)
    assert v5p["tpu"] == {"type": "tpu-v5p-slice", "count": 4, "topology": "2x2x2"}
    assert v5p["reservations"] == {"affinity": "Specific", "specific": [{"name": "v5p-calendar", "project": "ml-capacity"}]}
    v5e = ccm.priority_for("tpu-v5e-4x4", gke_cfg.pools["tpu-v5e-4x4"].spec, node_recycling=False)
    assert v5e["spot"] is False and v5e["location"] == {"zones": ["us-west4-a"]}


def test_node_recycling_needs_a_lead_time(gke_cfg):
    spec = gke_cfg.pools["h100-flex"].spec  # dws-flex without nodeRecyclingLeadTime
    with pytest.raises(ValueError, match="no nodeRecyclingLeadTime"):
        ccm.priority_for("h100-flex", spec, node_recycling=True)
    assert "nodeRecycling" not in ccm.priority_for("h100-flex", spec, node_recycling=False)["flexStart"]
