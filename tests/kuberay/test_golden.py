"""Golden files of representative manifests (tests/kuberay/golden/*.yaml).

A change to the generated manifests shows up here as a readable YAML diff. After an intended
change, regenerate with ``RAYFLEET_UPDATE_GOLDEN=1 pytest tests/kuberay/test_golden.py`` and review
the diff of the golden files.
"""

from __future__ import annotations

import os

import pytest
from kuberay_helpers import GOLDEN, service, train_job

from rayfleet.backends.kuberay import crd_schema
from rayfleet.backends.kuberay import manifests as m
from rayfleet.backends.kuberay.export import dump_yaml
from rayfleet.server.main import kuberay_serve_app  # what the control service deploys


def _run(cfg, pool, job):
    cluster, kuberay = m.cluster_kuberay(cfg)
    return m.run_objects(m.launch_request_for(job, cfg, pool), cluster=cluster, kuberay=kuberay).objects()


def _cases(cfg):
    return {
        "gpu-spot-rayjob": _run(cfg, "l4-spot", train_job(
            "finetune-l4", queue="research", workers=2, per_worker={"cpu": "8", "memory": "30Gi", "nvidia.com/gpu": 1},
            max_run="4h", labels={"team": "research"}, runtimeEnv={"working_dir": "gs://research-code/finetune.zip"})),
        "gpu-reservation-rayjob": _run(cfg, "a100-reserved", train_job(
            "resnet-a100", workers=2, per_worker={"cpu": "80", "memory": "500Gi", "nvidia.com/gpu": 8}, max_run="12h")),
        "h100-dws-flex-start": _run(cfg, "h100-flex", train_job(
            "llm-pretrain", workers=4, per_worker={"cpu": "180", "memory": "1400Gi", "nvidia.com/gpu": 8}, max_run="2d")),
        "tpu-v5e-multihost-rayjob": _run(cfg, "tpu-v5e-4x4", train_job(
            "jax-v5e", workers=4, per_worker={"cpu": "96", "memory": "160Gi", "google.com/tpu": 4}, accelerator="tpu-v5-lite-podslice",
            entrypoint=None, trainApp={"module": "train_apps.jax_lm", "config": {"steps": 1000}},
            checkpoint={"storagePath": "gs://ckpt/jax-v5e"})),
        "rayservice-multihost": [
            m.rayservice(service(
                "llama-70b", queue="training", replicaGroup={"hostsPerReplica": 2, "accelerator": "nvidia-tesla-a100",
                                                             "resourcesPerHost": {"cpu": "64", "memory": "400Gi", "nvidia.com/gpu": 8}},
                autoscaling={"minReplicas": 1, "maxReplicas": 2, "targetOngoingRequests": 8}, routePrefix="/llama"), cfg, kuberay_serve_app, pool="a100-reserved"),
            m.rayservice(service(
                "gemma-tpu", queue="training", replicaGroup={"hostsPerReplica": 4, "accelerator": "tpu-v5-lite-podslice",
                                                             "resourcesPerHost": {"cpu": "8", "google.com/tpu": 4}},
                autoscaling={"minReplicas": 1, "maxReplicas": 2}, routePrefix="/gemma"), cfg, kuberay_serve_app, pool="tpu-v5e-4x4"),
        ],
    }


CASES = ["gpu-spot-rayjob", "gpu-reservation-rayjob", "h100-dws-flex-start", "tpu-v5e-multihost-rayjob", "rayservice-multihost"]


@pytest.mark.parametrize("case", CASES)
def test_golden(gke_cfg, case):
    objs = _cases(gke_cfg)[case]
    for obj in objs:
        assert crd_schema.validate(obj) == [], obj["metadata"]["name"]
    text = dump_yaml(objs)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("RAYFLEET_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with RAYFLEET_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{case} differs from {path}; if intended, regenerate with RAYFLEET_UPDATE_GOLDEN=1"


def test_tpu_service_replicas_are_slices(gke_cfg):
    obj = _cases(gke_cfg)["rayservice-multihost"][1]
    group = obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert group["numOfHosts"] == 4
    assert (group["replicas"], group["maxReplicas"]) == (1, 2)  # one slice per Serve replica
