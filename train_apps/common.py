"""What the train apps share: device choice, checkpoint save/restore, and the ``main()`` driver."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch


def device() -> torch.device:
    """The worker's device: its GPU under Ray Train when CUDA is present, else CPU."""
    if torch.cuda.is_available():
        try:
            import ray.train.torch

            return ray.train.torch.get_device()
        except Exception:
            return torch.device("cuda")
    return torch.device("cpu")


def prepare(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap ``model`` for data-parallel training on this worker.

    With CUDA, Ray Train's ``prepare_model`` (device placement, DDP over nccl). Without CUDA, the
    model stays on CPU and is wrapped in DDP over the gloo group Ray Train set up: on hosts with
    fake GPUs Ray still hands the worker GPU ids, and ``prepare_model`` would move it to "cuda".
    """
    import ray.train
    import ray.train.torch

    if torch.cuda.is_available():
        return ray.train.torch.prepare_model(model)
    if ray.train.get_context().get_world_size() > 1:
        return torch.nn.parallel.DistributedDataParallel(model)
    return model


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Load the latest checkpoint Ray Train hands this run into ``model``/``optimizer``; the step it was taken at (0: none)."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0
    with ckpt.as_directory() as d:
        state = torch.load(os.path.join(d, "state.pt"), map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def report(step: int, metrics: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, checkpoint: bool) -> None:
    """Report metrics (every worker must call it the same number of times); rank 0 attaches the checkpoint."""
    import ray.train
    from ray.train import Checkpoint

    metrics = {"step": step, **metrics}
    if checkpoint and ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            state = {"step": step, "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict()}
            torch.save(state, os.path.join(d, "state.pt"))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def checkpoint_asked() -> bool:
    """Whether the platform asked this run to checkpoint now (a notice: :mod:`rayfleet.train.notice`).

    Call it once per step on every worker, unconditionally: in a group of more than one worker the
    flag is all-reduced (max), so every worker decides the same at the same step, as the collective
    checkpoint report needs."""
    from rayfleet.train import notice

    asked = notice.checkpoint_requested()
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        flag = torch.tensor([1 if asked else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        asked = bool(flag.item())
    return asked


def checkpoint_taken(asked: bool) -> None:
    """After the checkpoint a notice asked for is saved: clear the request on this worker."""
    if asked:
        from rayfleet.train import notice

        notice.consume()


def pace(config: dict[str, Any]) -> None:
    """Optional per-step sleep (``step_sleep_s``): stretches short demo runs so they can be interrupted."""
    sleep = float(config.get("step_sleep_s", 0) or 0)
    if sleep > 0:
        time.sleep(sleep)


def main_parser(prog: str, description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--workers", type=int, default=2, help="Ray Train workers (default 2)")
    ap.add_argument("--steps", type=int, default=None, help="training steps")
    ap.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps")
    ap.add_argument("--step-sleep", type=float, default=0.0, help="seconds to sleep per step")
    ap.add_argument("--storage-path", default=None, help="checkpoint storage (default: a temp dir); rerun with the same path and --name to resume")
    ap.add_argument("--name", default=None, help="run name (RunConfig.name)")
    ap.add_argument("--address", default=None, help="Ray address; default: RAY_ADDRESS, else a private local Ray")
    return ap


def run_main(args: argparse.Namespace, loop: Callable[[dict[str, Any]], None], config: dict[str, Any], name: str) -> Any:
    """Run ``loop`` with TorchTrainer on ``args.workers`` workers (GPUs and nccl when CUDA is present)."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    # Ray Train V2 also copies worker prints into its logger: every line would show twice.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    if args.address:
        ray.init(address=args.address)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        # A private, small Ray of its own (its own temp dir: never another cluster's /tmp/ray).
        ray.init(
            address="local",
            num_cpus=max(2, args.workers),
            object_store_memory=128 * 2**20,
            include_dashboard=False,
            _temp_dir=tempfile.mkdtemp(prefix="rf-app-", dir="/tmp"),
        )
    use_gpu = torch.cuda.is_available()
    storage = args.storage_path or tempfile.mkdtemp(prefix=f"{name}-")
    trainer = TorchTrainer(
        loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=args.workers, use_gpu=use_gpu),
        run_config=ray.train.RunConfig(
            name=args.name or name,
            storage_path=os.path.abspath(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=0, controller_failure_limit=0),
        ),
    )
    result = trainer.fit()
    print(f"{name}: finished: {result.metrics}; checkpoint: {result.checkpoint.path if result.checkpoint else None}", flush=True)
    return result
