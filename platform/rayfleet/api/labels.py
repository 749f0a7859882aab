"""Ray node labels and resources that mark a host's pool, on both backends.

The local backend starts simulated hosts with these; the KubeRay backend sets them through
``rayStartParams``. Placement (bundle label selectors) reads them, so one code path serves both.
"""

from __future__ import annotations

from .pool import PoolSpec

LABEL_POOL = "rayfleet.io/pool"
LABEL_ACCELERATOR = "rayfleet.io/accelerator"
LABEL_TPU_SLICE = "rayfleet.io/tpu-slice"        # slice id, e.g. "tpu-v5e-0"
LABEL_TPU_WORKER = "rayfleet.io/tpu-worker-id"   # host index within its slice
LABEL_HOST = "rayfleet.io/host"                  # host name, e.g. "h100-1"


def node_labels(pool_name: str, spec: PoolSpec, *, slice_index: int = 0, host_index: int = 0) -> dict[str, str]:
    """Labels of host ``host_index`` (within slice ``slice_index`` for TPU pools)."""
    labels = {LABEL_POOL: pool_name}
    if spec.accelerator is not None:
        labels[LABEL_ACCELERATOR] = spec.accelerator.value
    if spec.is_tpu:
        labels[LABEL_TPU_SLICE] = f"{pool_name}-{slice_index}"
        labels[LABEL_TPU_WORKER] = str(host_index)
        labels[LABEL_HOST] = f"{pool_name}-{slice_index}-{host_index}"
    else:
        labels[LABEL_HOST] = f"{pool_name}-{host_index}"
    return labels


def tpu_head_resource(spec: PoolSpec) -> str:
    """Ray's slice-head resource, e.g. ``TPU-v5litepod-16-head`` (present on host 0 of each slice)."""
    assert spec.accelerator is not None and spec.is_tpu
    return f"TPU-{spec.accelerator.tpu_pod_prefix}-{spec.tpu_chips_per_slice}-head"


def node_resources(spec: PoolSpec, *, host_index: int = 0) -> dict[str, float]:
    """Ray custom resources of one host (GPU count is passed as num_gpus, not here)."""
    res: dict[str, float] = {}
    if spec.accelerator is None:
        return res
    res[f"accelerator_type:{spec.accelerator.ray_type}"] = 1
    if spec.is_tpu:
        res["TPU"] = spec.accelerators_per_host
        if host_index == 0:
            res[tpu_head_resource(spec)] = 1
    return res
