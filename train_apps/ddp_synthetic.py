"""A torch DDP regression model on synthetic data (gloo on CPU, nccl when CUDA is present).

Every worker draws its own deterministic batch for each step (seeded by seed, step and rank), so
a run resumed from a checkpoint at step k sees exactly the data it would have seen from step k
on. Checkpoints (model + optimizer + step) every ``checkpoint_every`` steps, at the end,
and at the next step after the platform asks for one (a notice: ``common.checkpoint_asked``).

Config: steps (200), batch_size (64), features (32), hidden (64), lr (0.05),
checkpoint_every (10), step_sleep_s (0), seed (0).

    python -m train_apps.ddp_synthetic --workers 2 --steps 100
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import common

DEFAULTS: dict[str, Any] = {
    "steps": 200,
    "batch_size": 64,
    "features": 32,
    "hidden": 64,
    "lr": 0.05,
    "checkpoint_every": 10,
    "step_sleep_s": 0.0,
    "seed": 0,
}


def make_model(cfg: dict[str, Any]) -> nn.Module:
    torch.manual_seed(cfg["seed"])
    return nn.Sequential(nn.Linear(cfg["features"], cfg["hidden"]), nn.ReLU(), nn.Linear(cfg["hidden"], 1))


def batch(cfg: dict[str, Any], step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic batch of ``rank`` at ``step``: y = x . w_true + 0.3 sin(x_0) + noise."""
    g = torch.Generator().manual_seed(cfg["seed"])
    w_true = torch.randn(cfg["features"], 1, generator=g)
    g = torch.Generator().manual_seed((cfg["seed"] * 1_000_003 + step) * 1_009 + rank + 1)
    x = torch.randn(cfg["batch_size"], cfg["features"], generator=g)
    y = x @ w_true + 0.3 * torch.sin(x[:, :1]) + 0.01 * torch.randn(cfg["batch_size"], 1, generator=g)
    return x, y


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train

    cfg = {**DEFAULTS, **(config or {})}
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    dev = common.device()
    model = make_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
    start = common.restore(model, optimizer)
    model = common.prepare(model)
    # The parameters may have moved to the GPU; the optimizer state follows them.
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                state[k] = v.to(dev)
    if rank == 0:
        print(f"ddp_synthetic: world size {ctx.get_world_size()}, device {dev}, " + (f"resumed from step {start}" if start else "starting from step 0"), flush=True)
    loss_fn = nn.MSELoss()
    every = max(1, int(cfg["checkpoint_every"]))
    loss_value = float("nan")
    for step in range(start, cfg["steps"]):
        x, y = batch(cfg, step, rank)
        x, y = x.to(dev), y.to(dev)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        common.pace(cfg)
        done = step + 1
        asked = common.checkpoint_asked()  # a notice (spot reclaim, window end, ...): checkpoint now
        if asked or done % every == 0 or done == cfg["steps"]:
            common.report(done, {"loss": loss_value, "start_step": start}, model, optimizer, checkpoint=True)
            common.checkpoint_taken(asked)
            if rank == 0:
                print(f"ddp_synthetic: step {done}/{cfg['steps']} loss {loss_value:.4f} (checkpointed{' on notice' if asked else ''})", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = common.main_parser("python -m train_apps.ddp_synthetic", "Torch DDP regression on synthetic data, with checkpoint and resume.")
    args = ap.parse_args(argv)
    cfg = dict(DEFAULTS)
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.checkpoint_every is not None:
        cfg["checkpoint_every"] = args.checkpoint_every
    cfg["step_sleep_s"] = args.step_sleep
    common.run_main(args, train_loop_per_worker, cfg, "ddp_synthetic")


if __name__ == "__main__":
    main()
