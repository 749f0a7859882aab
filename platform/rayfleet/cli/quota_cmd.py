"""``rayfleet quota simulate --config CONFIG.yaml --workloads WORKLOADS.yaml [--at TIME] [--cycles N]``"""

from __future__ import annotations

from pathlib import Path

import typer

from ..api import parse_duration
from ..errors import SpecError
from .output import err_console, print_json

app = typer.Typer(help="Quota: try quota decisions offline.", no_args_is_help=True)


@app.callback()
def quota() -> None:
    """Quota decisions: the same code the control service runs, offline."""


@app.command("simulate")
def simulate_cmd(
    config: list[Path] = typer.Option(..., "--config", "-c", help="Cluster config file(s) with pools, flavors, cohorts, queues, priority classes (repeatable)."),
    workloads: Path = typer.Option(..., "--workloads", "-w", help="Workloads file: pending and already admitted workloads (see docs/quota.md)."),
    at: str | None = typer.Option(None, "--at", help="Time of the first cycle, RFC 3339 (2026-03-02T09:00:00Z) or epoch seconds; default: the file's `now`, else now."),
    cycles: int = typer.Option(1, "--cycles", min=1, help="Cycles to run."),
    step: str = typer.Option("60s", "--step", help="Time between cycles (e.g. 30s, 10m); workloads with a runtime finish in between."),
    fair_sharing: bool | None = typer.Option(
        None, "--fair-sharing/--no-fair-sharing", help="Fair sharing (dominant resource share) for admission order and preemption; default: the Cluster's spec.fairSharing."
    ),
) -> None:
    """Print, as JSON, what the quota layer decides: admitted (with flavor and borrowing), preempted
    (with reason) and waiting (with reason, blocking quota and what it could preempt), per cycle,
    and the queues' usage afterwards."""
    from ..simulate import parse_time, simulate

    try:
        start = parse_time(at) if at is not None else None
        step_s = parse_duration(step)
    except ValueError as e:
        err_console.print(f"[red]error[/red] {e}")
        raise typer.Exit(2) from None
    try:
        out = simulate(config, workloads, at=start, cycles=cycles, step=step_s, fair_sharing=fair_sharing)
    except SpecError as e:
        for problem in e.problems:
            err_console.print(f"[red]error[/red] {problem}")
        raise typer.Exit(2) from None
    print_json(out)
