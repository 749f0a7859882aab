"""A multi-host Serve application: a small torch MLP pipelined across a leader-worker group.

The model's layers are cut into ``hosts + 1`` stages: the leader (the Serve replica, host 0) runs
the first stage, worker ``i`` (host ``i``) runs stage ``i``, and the leader runs the last stage and
answers. Every member builds the same model from the same seed and keeps only its own stage, so no
weights travel; activations go from host to host through Ray's object store.

HTTP (JSON):

* ``POST <route>/`` ``{"inputs": [[x0, ..., x{in_dim-1}], ...], "work_ms": 0}`` ->
  ``{"outputs": [[...], ...], "hosts": [...]}`` (``work_ms``: extra simulated compute per request,
  for load tests);
* ``GET <route>/info`` -> the group: rank, node id, host, pool of each member.

Without a placement group (a plain ``serve.run``) the leader runs every stage itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch
from ray import serve
from starlette.requests import Request

from rayfleet.serve.group import GroupMember, LeaderWorkerGroup

DEFAULTS: dict[str, Any] = {"in_dim": 16, "hidden": 64, "out_dim": 4, "layers": 6, "seed": 0}


def build_layers(in_dim: int, hidden: int, out_dim: int, layers: int, seed: int) -> list[torch.nn.Module]:
    """The whole model as a list of blocks (Linear + ReLU, the last one Linear only), from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    blocks: list[torch.nn.Module] = []
    for i in range(layers):
        lin = torch.nn.Linear(dims[i], dims[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) / dims[i] ** 0.5)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen) * 0.01)
        blocks.append(lin if i == layers - 1 else torch.nn.Sequential(lin, torch.nn.ReLU()))
    return blocks


def stage_bounds(layers: int, stages: int) -> list[tuple[int, int]]:
    """Split ``layers`` blocks into ``stages`` contiguous, non-empty ranges."""
    if stages > layers:
        raise ValueError(f"layers: {layers} layers cannot fill {stages} pipeline stages")
    base, extra = divmod(layers, stages)
    out, start = [], 0
    for s in range(stages):
        end = start + base + (1 if s < extra else 0)
        out.append((start, end))
        start = end
    return out


def build_stage(cfg: dict[str, Any], stage: int, stages: int) -> torch.nn.Module:
    blocks = build_layers(cfg["in_dim"], cfg["hidden"], cfg["out_dim"], cfg["layers"], cfg["seed"])
    lo, hi = stage_bounds(cfg["layers"], stages)[stage]
    module = torch.nn.Sequential(*blocks[lo:hi])
    module.eval()
    return module


def reference_forward(inputs: list[list[float]], cfg: dict[str, Any] | None = None) -> list[list[float]]:
    """The whole model on one process (what the pipeline must reproduce)."""
    c = {**DEFAULTS, **(cfg or {})}
    model = torch.nn.Sequential(*build_layers(c["in_dim"], c["hidden"], c["out_dim"], c["layers"], c["seed"]))
    with torch.no_grad():
        return model(torch.tensor(inputs, dtype=torch.float32)).tolist()


class MLPStage(GroupMember):
    """Worker ``rank``: the middle stage ``rank`` of the pipeline, on its own host."""

    def __init__(self, cfg: dict[str, Any], *, rank: int, world_size: int) -> None:
        super().__init__(rank=rank, world_size=world_size)
        torch.set_num_threads(1)
        self.stage = build_stage(cfg, rank, world_size + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.stage(x)


@serve.deployment(max_ongoing_requests=16)
class PipelinedMLP(LeaderWorkerGroup):
    def __init__(self, **cfg: Any) -> None:
        self.cfg = {**DEFAULTS, **cfg}
        torch.set_num_threads(1)
        self.start_group(MLPStage, self.cfg)
        stages = len(self.members) + 2
        self.first = build_stage(self.cfg, 0, stages)
        self.last = build_stage(self.cfg, stages - 1, stages)

    async def __call__(self, request: Request) -> dict[str, Any]:
        self.raise_if_broken()
        if request.method == "GET" and request.url.path.rstrip("/").endswith("/info"):
            return {"group": self.group_info}
        body = await request.json()
        x = torch.tensor(body["inputs"], dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] != self.cfg["in_dim"]:
            raise ValueError(f"inputs: expected rows of {self.cfg['in_dim']} numbers")
        work_ms = float(body.get("work_ms", 0))
        with torch.no_grad():
            h = self.first(x)
        for member in self.members:
            h = await member.forward.remote(h)
        if work_ms:
            await asyncio.sleep(work_ms / 1000)
        with torch.no_grad():
            out = self.last(h)
        return {"outputs": out.tolist(), "hosts": [m["host"] for m in self.group_info]}


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: ``args`` may set in_dim, hidden, out_dim, layers, seed."""
    unknown = set(args) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"args: unknown keys {sorted(unknown)}; expected some of {sorted(DEFAULTS)}")
    return PipelinedMLP.bind(**args)


app = build_app({})
