"""Pictures of fleet reports (``rayfleet simulate fleet --plot DIR``, ``docs/scale.md``), drawn with
matplotlib's Agg backend from the report's own data, nothing else:

- ``utilisation.png``: per accelerator, accelerators held by admitted workloads over time as a
  share of the most its pools can have (``pools[].acceleratorsInUse / acceleratorsMax``), and, dashed,
  the share that is up (``accelerators``); one panel per policy.
- ``queue-depth.png``: jobs queued per team over time (its queues' ``queued`` summed), the
  :data:`TOP_TEAMS` deepest teams by name and the rest as one line; one panel per policy.
- ``wait-times.png``: the distribution (empirical CDF) of jobs' ``waitSeconds`` per priority class;
  one panel per policy.

``reports`` maps a policy's label to its report; ``rayfleet simulate fleet`` passes one. Imported
only when pictures are asked for, so the CLI does not load matplotlib otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from ..config import PlatformConfig  # noqa: E402

TOP_TEAMS = 10
FILES = ("utilisation.png", "queue-depth.png", "wait-times.png")


def _panels(n: int, title: str) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(n, 1, figsize=(11, 3.6 * n), squeeze=False)
    fig.suptitle(title)
    return fig, [a[0] for a in axes]


def _hours(series: list[dict[str, Any]]) -> list[float]:
    return [p["t"] / 3600 for p in series]


def utilisation(ax: Any, report: dict[str, Any], config: PlatformConfig, label: str) -> None:
    by_acc: dict[str, list[str]] = defaultdict(list)
    for pool in report.get("pools", {}):
        spec = config.pools[pool].spec if pool in config.pools else None
        if spec is not None and spec.accelerator is not None:
            by_acc[spec.accelerator.value].append(pool)
    for acc, pools in sorted(by_acc.items()):
        series = [report["pools"][p] for p in pools]
        times = _hours(series[0])
        cap = [sum(s[i]["acceleratorsMax"] for s in series) or 1 for i in range(len(times))]
        held = [100 * sum(s[i]["acceleratorsInUse"] for s in series) / cap[i] for i in range(len(times))]
        up = [100 * sum(s[i]["accelerators"] for s in series) / cap[i] for i in range(len(times))]
        (line,) = ax.plot(times, held, label=f"{acc} ({cap[0]})")
        ax.plot(times, up, linestyle="--", linewidth=0.8, color=line.get_color())
    ax.set_title(f"{label}: accelerators held (solid) and up (dashed), % of the most the pools can have")
    ax.set_xlabel("hours")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    if by_acc:
        ax.legend(fontsize="small", loc="upper right")


def queue_depth(ax: Any, report: dict[str, Any], config: PlatformConfig, label: str) -> None:
    per_team: dict[str, list[int]] = {}
    times: list[float] = []
    for queue, series in report.get("queues", {}).items():
        team = config.queues[queue].spec.team if queue in config.queues else queue
        times = _hours(series)
        depth = per_team.setdefault(team, [0] * len(series))
        for i, p in enumerate(series):
            depth[i] += p["queued"]
    ranked = sorted(per_team, key=lambda t: (-max(per_team[t], default=0), t))
    top, rest = sorted(ranked[:TOP_TEAMS]), ranked[TOP_TEAMS:]
    for team in top:
        ax.plot(times, per_team[team], label=team, drawstyle="steps-post")
    if rest:
        ax.plot(times, [sum(per_team[t][i] for t in rest) for i in range(len(times))], color="grey", label=f"{len(rest)} other teams", drawstyle="steps-post")
    ax.set_title(f"{label}: jobs queued per team" + (f" (the {TOP_TEAMS} deepest)" if rest else ""))
    ax.set_xlabel("hours")
    ax.set_ylabel("jobs queued")
    if per_team:
        ax.legend(fontsize="small", loc="upper right", ncol=2)


def wait_times(ax: Any, report: dict[str, Any], config: PlatformConfig, label: str) -> None:
    default = next((p.name for p in config.priority_classes.values() if p.spec.default), "default")
    waits: dict[str, list[float]] = defaultdict(list)
    for j in report.get("jobs", []):
        waits[j["priorityClass"] or default].append(max(j["waitSeconds"], 1.0) / 60)
    for prio, values in sorted(waits.items()):
        values.sort()
        n = len(values)
        ax.step(values, [(i + 1) / n for i in range(n)], where="post", label=f"{prio} ({n} jobs, p50 {values[n // 2]:.1f} min)")
    ax.set_xscale("log")
    ax.set_title(f"{label}: wait per job (time not running), by priority")
    ax.set_xlabel("minutes (log)")
    ax.set_ylabel("share of jobs")
    ax.set_ylim(0, 1.02)
    if waits:
        ax.legend(fontsize="small", loc="lower right")


def write_plots(reports: dict[str, dict[str, Any]], out: Path, config: PlatformConfig) -> list[Path]:
    """Write :data:`FILES` into ``out`` (created if missing); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw, title in zip(FILES, (utilisation, queue_depth, wait_times),
                                 ("Utilisation per accelerator", "Queue depth per team", "Wait-time distribution"), strict=True):
        fig, axes = _panels(len(reports), title)
        try:
            for ax, (label, report) in zip(axes, reports.items(), strict=True):
                draw(ax, report, config, label)
            fig.tight_layout()
            path = out / name
            fig.savefig(path, dpi=90)
            written.append(path)
        finally:
            plt.close(fig)
    return written
