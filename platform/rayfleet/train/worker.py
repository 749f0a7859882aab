"""What runs first in every Ray Train worker of a rayfleet gang.

It records the worker's rank, Ray node id, pid and time in the run directory (the backend derives
"all workers running", the gang's node ids and host-failure detection from these), then calls the
train app's ``train_loop_per_worker(config)``.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

from ..backends.rundir import RunDir

#: Key of train_loop_config that carries rayfleet's own settings (removed before the app sees it).
CONFIG_KEY = "_rayfleet"


def load_app(module: str) -> Any:
    """The ``train_loop_per_worker`` of a train app module."""
    mod = importlib.import_module(module)
    fn = getattr(mod, "train_loop_per_worker", None)
    if not callable(fn):
        raise TypeError(f"train app {module!r} has no train_loop_per_worker(config) function")
    return fn


def run_worker(config: dict[str, Any]) -> None:
    import ray
    import ray.train

    config = dict(config)
    own = config.pop(CONFIG_KEY)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    RunDir(own["run_dir"]).write_worker(
        rank,
        {
            "rank": rank,
            "world_size": ctx.get_world_size(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "t": time.time(),
        },
    )
    load_app(own["app"])(config)
