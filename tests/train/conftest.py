"""A small real local Ray cluster for the Train gang tests, started once per module.

Two pools: ``gpu`` (2 hosts x 2 fake L4 GPUs) and ``tpu`` (one v5e 2x4 slice: 2 hosts x 4 chips).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

SMALL_CONFIG = """\
kind: Cluster
metadata: {name: train-test}
spec:
  backend: local
  local: {objectStoreMemory: 96Mi, headCpus: 2}
  startTimeout: 300
---
kind: Pool
metadata: {name: gpu}
spec: {accelerator: nvidia-l4, acceleratorsPerHost: 2, machineType: g2-standard-24, cpuPerHost: 24, memoryPerHost: 96Gi, maxReplicas: 2}
---
kind: Pool
metadata: {name: tpu}
spec: {accelerator: tpu-v5-lite-podslice, acceleratorsPerHost: 4, machineType: ct5lp-hightpu-4t, tpuTopology: 2x4, cpuPerHost: 112, memoryPerHost: 192Gi, maxReplicas: 1}
"""


@pytest.fixture(scope="module")
def small_backend(tmp_path_factory):
    from rayfleet.backends import local_procs
    from rayfleet.backends.local import LocalBackend

    data = tmp_path_factory.mktemp("rf-train")
    cfg = Path(data) / "small.yaml"
    cfg.write_text(SMALL_CONFIG)
    temp_dir = f"/tmp/rf-train-{uuid.uuid4().hex[:8]}"
    backend = LocalBackend.from_config_files([cfg], data / "data", temp_dir=temp_dir, placement_timeout_s=30)
    backend.up()
    try:
        yield backend
    finally:
        backend.down()
        assert not local_procs.cluster_pids(temp_dir), "processes of the test cluster survived down()"
        os.system(f"rm -rf {temp_dir}")
