"""A job's checkpoint directory is one rule (``backends.base.checkpoint_dir``): the controller's
launches and the KubeRay export put the same job's checkpoints in the same place."""

from __future__ import annotations

from pathlib import Path

from rayfleet.api import TrainJob
from rayfleet.backends.base import checkpoint_dir
from rayfleet.backends.kuberay.manifests import launch_request_for
from rayfleet.config import load_config

GKE = Path(__file__).resolve().parents[2] / "cluster_configs" / "gke-example.yaml"


def job(name: str, storage: str | None = None) -> TrainJob:
    spec = {"entrypoint": "python train.py", "queue": "training",
            "gang": {"workers": 1, "resourcesPerWorker": {"cpu": "1"}}}
    if storage:
        spec["checkpoint"] = {"storagePath": storage}
    return TrainJob.model_validate({"metadata": {"name": name}, "spec": spec})


def test_checkpoint_dir_joins_the_job_name_to_the_storage_path_or_the_data_dir(tmp_path):
    assert checkpoint_dir(job("j", "gs://bucket/ckpt/"), tmp_path) == "gs://bucket/ckpt/j"
    assert checkpoint_dir(job("j", "/mnt/ckpt"), None) == "/mnt/ckpt/j"
    assert checkpoint_dir(job("j"), tmp_path) == str(tmp_path / "checkpoints" / "j")
    assert checkpoint_dir(job("j"), None) is None
    with_uid = job("j").model_copy(update={"metadata": job("j").metadata.model_copy(update={"uid": "u-1"})})
    assert checkpoint_dir(with_uid, tmp_path) == str(tmp_path / "checkpoints" / "j" / "u-1")


def test_the_controller_and_the_kuberay_export_agree(fleet):
    j = job("resume-me", "gs://bucket/ckpt")
    gke = load_config([GKE])
    exported = launch_request_for(j, gke, next(iter(gke.pools)))
    assert exported.checkpoint_dir == fleet.checkpoint_dir(j) == "gs://bucket/ckpt/resume-me"
    # no storagePath: the backend picks the root (never the service's data directory, closed to Ray)
    assert fleet.checkpoint_dir(job("local-job")) is None
