"""Building the quota configuration and workloads from rayfleet's api objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayfleet.api import Cohort, ComputeClass, PriorityClass, Queue, TrainJob
from rayfleet.backends.kuberay import kueue
from rayfleet.config import load_config
from rayfleet.errors import ConfigError
from rayfleet.quota import (
    FairSharingStrategy,
    FlavorPreference,
    PreemptionPolicy,
    QueueingStrategy,
    QuotaState,
    ResourceQuota,
    WhenCanBorrow,
    WhenCanPreempt,
)
from rayfleet.quota.from_api import from_platform, priority_value, to_quota_config, train_job_workload

QUEUE = {
    "kind": "Queue",
    "metadata": {"name": "research"},
    "spec": {
        "team": "research",
        "cohort": "ml",
        "computeClass": "h100-first",
        "queueingStrategy": "StrictFIFO",
        "preemption": {
            "withinClusterQueue": "LowerOrNewerEqualPriority",
            "reclaimWithinCohort": "LowerPriority",
            "borrowWithinCohort": {"policy": "LowerPriority", "maxPriorityThreshold": 100},
        },
        "flavorFungibility": {"whenCanBorrow": "TryNextFlavor", "whenCanPreempt": "Preempt"},
        "fairSharing": {"weight": 2},
        "resourceGroups": [
            {
                "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                "flavors": [
                    {
                        "name": "spot",
                        "resources": [
                            {"name": "cpu", "nominalQuota": "500m"},
                            {"name": "memory", "nominalQuota": "1Gi"},
                            {"name": "nvidia.com/gpu", "nominalQuota": 2},
                        ],
                    },
                    {
                        "name": "h100",
                        "resources": [
                            {"name": "cpu", "nominalQuota": 64, "borrowingLimit": 8},
                            {"name": "memory", "nominalQuota": "512Gi"},
                            {"name": "nvidia.com/gpu", "nominalQuota": 8, "lendingLimit": 4},
                        ],
                    },
                ],
            }
        ],
        "quotaSchedule": [
            {
                "name": "nights",
                "days": ["mon", "fri"],
                "start": "20:00",
                "end": "06:00",
                "timezone": "Europe/Paris",
                "quotas": [{"flavor": "h100", "resource": "nvidia.com/gpu", "nominalQuota": 16}],
            }
        ],
    },
}


def test_queue_conversion():
    q = Queue.model_validate(QUEUE)
    cc = ComputeClass.model_validate(
        {"kind": "ComputeClass", "metadata": {"name": "h100-first"}, "spec": {"flavors": [{"flavor": "h100"}, {"flavor": "spot"}]}}
    )
    cfg = to_quota_config([q], [Cohort.model_validate({"kind": "Cohort", "metadata": {"name": "ml"}})], {"h100-first": cc})
    qc = cfg.queues[0]
    assert qc.flavors == ("h100", "spot")  # the compute class order
    assert qc.quotas[("spot", "cpu")] == ResourceQuota(500)
    assert qc.quotas[("spot", "memory")] == ResourceQuota(2**30)
    assert qc.quotas[("h100", "cpu")] == ResourceQuota(64_000, 8_000, None)
    assert qc.quotas[("h100", "nvidia.com/gpu")] == ResourceQuota(8, None, 4)
    assert qc.cohort == "ml"
    assert qc.queueing_strategy == QueueingStrategy.STRICT_FIFO
    assert qc.preemption.within_cluster_queue == PreemptionPolicy.LOWER_OR_NEWER_EQUAL_PRIORITY
    assert qc.preemption.reclaim_within_cohort == PreemptionPolicy.LOWER_PRIORITY
    assert qc.preemption.borrow_within_cohort.policy == "LowerPriority"
    assert qc.preemption.borrow_within_cohort.max_priority_threshold == 100
    assert qc.flavor_fungibility.when_can_borrow == WhenCanBorrow.TRY_NEXT_FLAVOR
    assert qc.flavor_fungibility.when_can_preempt == WhenCanPreempt.PREEMPT
    assert qc.fair_share_weight == 2.0
    (w,) = qc.schedule
    assert (w.name, w.days, w.start, w.end, w.timezone) == ("nights", ("mon", "fri"), "20:00", "06:00", "Europe/Paris")
    assert w.quotas == {("h100", "nvidia.com/gpu"): ResourceQuota(16)}
    # Without the compute classes, the resource-group order.
    assert to_quota_config([q], [Cohort.model_validate({"kind": "Cohort", "metadata": {"name": "ml"}})]).queues[0].flavors == ("spot", "h100")


def test_cohort_parents_and_weights():
    cohorts = [
        Cohort.model_validate({"kind": "Cohort", "metadata": {"name": "org"}}),
        Cohort.model_validate({"kind": "Cohort", "metadata": {"name": "ml"}, "spec": {"parent": "org", "fairSharing": {"weight": 3}}}),
    ]
    cfg = to_quota_config([Queue.model_validate(QUEUE)], cohorts, fair_sharing=True)
    assert {c.name: (c.parent, c.fair_share_weight) for c in cfg.cohorts} == {"org": (None, 1.0), "ml": ("org", 3.0)}
    assert cfg.fair_sharing
    QuotaState(cfg)  # builds


def test_priorities_and_train_jobs():
    classes = {
        "prod": PriorityClass.model_validate({"kind": "PriorityClass", "metadata": {"name": "prod"}, "spec": {"value": 1000}}),
        "exp": PriorityClass.model_validate({"kind": "PriorityClass", "metadata": {"name": "exp"}, "spec": {"value": 10, "default": True}}),
    }
    assert priority_value(classes, "prod") == 1000
    assert priority_value(classes, None) == 10
    assert priority_value({}, None) == 0
    with pytest.raises(KeyError, match="gold"):
        priority_value(classes, "gold")
    job = TrainJob.model_validate(
        {
            "kind": "TrainJob",
            "metadata": {"name": "llama"},
            "spec": {
                "entrypoint": "python train.py",
                "queue": "research",
                "gang": {"workers": 4, "resourcesPerWorker": {"cpu": 8, "memory": "64Gi", "nvidia.com/gpu": 8}},
            },
        }
    )
    wl = train_job_workload(job, priority=1000, created=5.0, flavors=["h100"])
    assert (wl.id, wl.queue, wl.priority, wl.created, wl.flavors) == ("llama", "research", 1000, 5.0, ("h100",))
    assert wl.total() == {"cpu": 32_000, "memory": 4 * 64 * 2**30, "nvidia.com/gpu": 32}


def test_the_embedded_local_config_converts():
    from rayfleet.config import load_config

    path = Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"
    platform = load_config([path])
    state = QuotaState(from_platform(platform))
    assert state.queue_names() == sorted(platform.queues)


def test_fair_sharing_follows_the_cluster_unless_overridden():
    from types import SimpleNamespace

    from rayfleet.api import Cluster

    q = Queue.model_validate({**QUEUE, "spec": {**QUEUE["spec"], "computeClass": None}})
    ml = Cohort.model_validate({"kind": "Cohort", "metadata": {"name": "ml"}})
    cluster = Cluster.model_validate({"kind": "Cluster", "metadata": {"name": "c"}, "spec": {"fairSharing": True}})
    platform = SimpleNamespace(queues={"research": q}, cohorts={"ml": ml}, compute_classes={}, cluster=cluster)
    assert from_platform(platform).fair_sharing is True
    assert from_platform(platform, fair_sharing=False).fair_sharing is False
    assert from_platform(SimpleNamespace(queues={"research": q}, cohorts={"ml": ml}, compute_classes={}, cluster=None)).fair_sharing is False


LOCAL = Path(__file__).resolve().parents[2] / "cluster_configs" / "local.yaml"


def test_the_clusters_fair_sharing_strategies_reach_the_quota_layer(tmp_path):
    local = LOCAL.read_text()
    assert "kind: Cluster\n" in local and "  backend: local\n" in local
    path = tmp_path / "platform.yaml"
    path.write_text(local.replace("  backend: local\n", "  backend: local\n  fairSharing: true\n  fairSharingStrategies: [LessThanInitialShare]\n", 1))
    cfg = from_platform(load_config([path]))
    assert cfg.fair_sharing and cfg.fair_sharing_strategies == (FairSharingStrategy.LESS_THAN_INITIAL_SHARE,)
    # Kueue holds them in its controller configuration: the export says it cannot carry them
    assert [n for n in kueue.not_exported(load_config([path])) if "preemptionStrategies LessThanInitialShare" in n]
    path.write_text(local.replace("  backend: local\n", "  backend: local\n  fairSharingStrategies: [LessThanInitialShare, LessThanOrEqualToFinalShare]\n", 1))
    with pytest.raises(ConfigError) as e:
        load_config([path])
    assert "fairSharingStrategies: Kueue accepts" in str(e.value) and "Cluster/" in str(e.value)
    # the default: Kueue's, both in order
    assert from_platform(load_config([LOCAL])).fair_sharing_strategies == (
        FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE, FairSharingStrategy.LESS_THAN_INITIAL_SHARE)


def test_flavor_fungibility_preference_reaches_the_quota_layer():
    spec = {**QUEUE["spec"], "flavorFungibility": {"whenCanBorrow": "TryNextFlavor", "whenCanPreempt": "TryNextFlavor",
                                                   "preference": "PreemptionOverBorrowing"}}
    q = Queue.model_validate({**QUEUE, "spec": spec})
    cohort = Cohort.model_validate({"kind": "Cohort", "metadata": {"name": "ml"}})
    assert to_quota_config([q], [cohort]).queues[0].flavor_fungibility.preference == FlavorPreference.PREEMPTION_OVER_BORROWING
    assert to_quota_config([Queue.model_validate(QUEUE)], [cohort]).queues[0].flavor_fungibility.preference == FlavorPreference.BORROWING_OVER_PREEMPTION
