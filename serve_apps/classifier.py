"""A single-host Serve application: a small torch classifier answering JSON.

``POST <route>/`` ``{"inputs": [[f0, f1, f2, f3], ...], "work_ms": 0}`` ->
``{"labels": [...], "probs": [[...], ...]}``. The weights come from a seed (no files to ship);
``work_ms`` adds simulated compute per request, for load and autoscaling tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch
from ray import serve
from starlette.requests import Request

CLASSES = ["setosa", "versicolor", "virginica"]


def build_model(in_dim: int = 4, hidden: int = 32, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, len(CLASSES)))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.eval()
    return model


@serve.deployment(max_ongoing_requests=16)
class Classifier:
    def __init__(self, in_dim: int = 4, hidden: int = 32, seed: int = 0) -> None:
        torch.set_num_threads(1)
        self.in_dim = in_dim
        self.model = build_model(in_dim, hidden, seed)

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        x = torch.tensor(body["inputs"], dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"inputs: expected rows of {self.in_dim} numbers")
        work_ms = float(body.get("work_ms", 0))
        if work_ms:
            await asyncio.sleep(work_ms / 1000)
        with torch.no_grad():
            probs = torch.softmax(self.model(x), dim=-1)
        return {"labels": [CLASSES[i] for i in probs.argmax(dim=-1).tolist()], "probs": probs.tolist()}


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: ``args`` may set in_dim, hidden, seed."""
    unknown = set(args) - {"in_dim", "hidden", "seed"}
    if unknown:
        raise ValueError(f"args: unknown keys {sorted(unknown)}")
    return Classifier.bind(**args)


app = build_app({})
