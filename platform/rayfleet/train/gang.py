"""Ray Train glue for a gang: the ScalingConfig/RunConfig a GangPlan maps to, and the helper
entry-point programs use to find their reserved placement group.

Why Train's own placement group: Ray 2.60's Train V2 creates exactly one placement group for the
worker group, with one bundle per worker, the ScalingConfig's ``placement_strategy``, and
``ScalingConfig.label_selector`` passed through as the group's ``bundle_label_selector``. A
placement group is reserved atomically, so the gang is all-or-nothing, and every bundle carries
the pool's label selector, so every worker lands on a host of the admitted pool. The worker-group
start timeout bounds how long an unplaceable gang waits; ``controller_failure_limit=0`` and
``max_failures=0`` make Train give up instead of retrying forever, so the gang's failures are
decided by rayfleet's controller (requeue, max restarts), not inside Train.
"""

from __future__ import annotations

import os
from typing import Any

from ..backends.placement import GangPlan
from ..backends.rundir import TRAIN_RUN_NAME

ENV_PLACEMENT_GROUP = "RAYFLEET_PLACEMENT_GROUP"
ENV_PLACEMENT_GROUP_ID = "RAYFLEET_PLACEMENT_GROUP_ID"
ENV_NAMESPACE = "RAYFLEET_RAY_NAMESPACE"
ENV_BUNDLE = "RAYFLEET_BUNDLE_RESOURCES"
ENV_WORKERS = "RAYFLEET_WORKERS"
ENV_RUN_ID = "RAYFLEET_RUN_ID"
ENV_CHECKPOINT_DIR = "RAYFLEET_CHECKPOINT_DIR"
ENV_START_TIMEOUT = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


def scaling_config(plan: GangPlan) -> Any:
    import ray.train

    return ray.train.ScalingConfig(
        num_workers=plan.workers,
        use_gpu=plan.use_gpu,
        resources_per_worker=dict(plan.train_resources),
        placement_strategy=plan.strategy,
        label_selector=[dict(s) for s in plan.label_selectors],
    )


def run_config(checkpoint_dir: str, *, num_to_keep: int = 2) -> Any:
    import ray.train

    return ray.train.RunConfig(
        name=TRAIN_RUN_NAME,
        storage_path=checkpoint_dir,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=num_to_keep),
        failure_config=ray.train.FailureConfig(max_failures=0, controller_failure_limit=0),
    )


def torch_config(plan: GangPlan, *, fake_accelerators: bool) -> Any:
    """gloo unless the gang has real GPUs (then Train's default for use_gpu: nccl)."""
    from ray.train.torch import TorchConfig

    if plan.use_gpu and not fake_accelerators:
        return TorchConfig()
    return TorchConfig(backend="gloo")


def current_placement_group() -> Any:
    """In an entry-point job: the gang's placement group (``RAYFLEET_PLACEMENT_GROUP_ID``), or None.

    Schedule into it with ``PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)``;
    each bundle holds one worker's resources (``RAYFLEET_BUNDLE_RESOURCES``).
    """
    pg_id = os.environ.get(ENV_PLACEMENT_GROUP_ID)
    if not pg_id:
        return None
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id)))
