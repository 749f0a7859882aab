"""A tiny next-token language model: a one-layer causal transformer over characters, trained with
DDP on a synthetic corpus (sentences from a small grammar, deterministic from the seed).

Checkpoints every ``checkpoint_every`` steps and resumes from the latest one. ``main()`` prints a
greedy sample from the trained model.

Config: steps (300), batch_size (32), context (32), d_model (48), heads (4), lr (3e-3),
checkpoint_every (25), step_sleep_s (0), seed (0).

    python -m train_apps.tiny_lm --workers 2 --steps 200
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from torch import nn

from . import common

DEFAULTS: dict[str, Any] = {
    "steps": 300,
    "batch_size": 32,
    "context": 32,
    "d_model": 48,
    "heads": 4,
    "lr": 3e-3,
    "checkpoint_every": 25,
    "step_sleep_s": 0.0,
    "seed": 0,
}

_SUBJECTS = ["the cat", "a dog", "the robot", "my friend", "the model", "a bird"]
_VERBS = ["sees", "likes", "trains", "follows", "reads", "builds"]
_OBJECTS = ["the ball", "a book", "the tree", "a cluster", "the gradient", "some data"]
_ENDS = [".", " today.", " again.", " slowly."]


def corpus(seed: int, sentences: int = 400) -> str:
    rng = random.Random(seed)
    return " ".join(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDS)}" for _ in range(sentences))


VOCAB = sorted(set(" ".join(_SUBJECTS + _VERBS + _OBJECTS + _ENDS)))
STOI = {c: i for i, c in enumerate(VOCAB)}


def encode(text: str) -> torch.Tensor:
    return torch.tensor([STOI[c] for c in text], dtype=torch.long)


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


class TinyLM(nn.Module):
    def __init__(self, vocab: int, context: int, d_model: int, heads: int):
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(context, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        mask = torch.triu(torch.full((t, t), float("-inf"), device=idx.device), diagonal=1)
        h = self.blocks(self.tok(idx) + self.pos(pos), mask=mask, is_causal=True)
        return self.head(h)


def make_model(cfg: dict[str, Any]) -> TinyLM:
    torch.manual_seed(cfg["seed"])
    return TinyLM(len(VOCAB), cfg["context"], cfg["d_model"], cfg["heads"])


def batch(data: torch.Tensor, cfg: dict[str, Any], step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed((cfg["seed"] * 1_000_003 + step) * 1_009 + rank + 1)
    starts = torch.randint(0, len(data) - cfg["context"] - 1, (cfg["batch_size"],), generator=g)
    x = torch.stack([data[s:s + cfg["context"]] for s in starts])
    y = torch.stack([data[s + 1:s + 1 + cfg["context"]] for s in starts])
    return x, y


@torch.no_grad()
def generate(model: TinyLM, prompt: str, n: int = 60) -> str:
    model.eval()
    idx = encode(prompt).unsqueeze(0)
    for _ in range(n):
        logits = model(idx[:, -model.context:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return decode(idx[0].tolist())


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train

    cfg = {**DEFAULTS, **(config or {})}
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    dev = common.device()
    data = encode(corpus(cfg["seed"]))
    model = make_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"])
    start = common.restore(model, optimizer)
    model = common.prepare(model)
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(dev)
    if rank == 0:
        print(f"tiny_lm: vocab {len(VOCAB)}, world size {ctx.get_world_size()}, device {dev}, " + (f"resumed from step {start}" if start else "starting from step 0"), flush=True)
    loss_fn = nn.CrossEntropyLoss()
    every = max(1, int(cfg["checkpoint_every"]))
    for step in range(start, cfg["steps"]):
        model.train()
        x, y = batch(data, cfg, step, rank)
        x, y = x.to(dev), y.to(dev)
        logits = model(x)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        common.pace(cfg)
        done = step + 1
        asked = common.checkpoint_asked()  # a notice (spot reclaim, window end, ...): checkpoint now
        if asked or done % every == 0 or done == cfg["steps"]:
            value = loss.item()
            common.report(done, {"loss": value, "perplexity": math.exp(min(value, 50.0)), "start_step": start}, model, optimizer, checkpoint=True)
            common.checkpoint_taken(asked)
            if rank == 0:
                print(f"tiny_lm: step {done}/{cfg['steps']} loss {value:.3f} (checkpointed{' on notice' if asked else ''})", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = common.main_parser("python -m train_apps.tiny_lm", "A tiny next-token character LM trained with DDP, with checkpoint and resume.")
    ap.add_argument("--prompt", default="the cat ", help="prompt for the sample printed at the end")
    args = ap.parse_args(argv)
    cfg = dict(DEFAULTS)
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.checkpoint_every is not None:
        cfg["checkpoint_every"] = args.checkpoint_every
    cfg["step_sleep_s"] = args.step_sleep
    result = common.run_main(args, train_loop_per_worker, cfg, "tiny_lm")
    if result.checkpoint is not None:
        model = make_model(cfg)
        with result.checkpoint.as_directory() as d:
            state = torch.load(f"{d}/state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        print(f"tiny_lm: sample: {generate(model, args.prompt)!r}", flush=True)


if __name__ == "__main__":
    main()
