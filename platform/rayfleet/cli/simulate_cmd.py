"""``rayfleet simulate fleet --config CONFIG --scenario SCENARIO.yaml [--until DURATION] [--json]``"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..api import parse_duration
from ..errors import SpecError
from .output import console, err_console, print_json

app = typer.Typer(help="Simulate: the platform's own code on simulated capacity and time.", no_args_is_help=True)


@app.callback()
def simulate() -> None:
    """Run the control service's real code offline, on the simulated backend."""


def _fail(problems: list[Any]) -> None:
    for problem in problems:
        err_console.print(f"[red]error[/red] {problem}", highlight=False)
    raise typer.Exit(2)


@app.command("fleet")
def fleet_cmd(
    config: list[Path] = typer.Option(..., "--config", "-c", help="Cluster config file(s): pools (with provisioning modes and prices), flavors, queues (repeatable)."),
    scenario: Path = typer.Option(..., "--scenario", "-s", help="Fleet scenario: the sim's capacity script plus the jobs and services to submit (docs/capacity.md)."),
    until: str | None = typer.Option(None, "--until", help="Simulated time to run (e.g. 6h, 2d); default: the scenario's `until`, else until every job has ended."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as one JSON object."),
) -> None:
    """Run the real store, quota, controller and service manager over the simulated backend on
    simulated time, and report per job (state, attempts, restarts, disruptions by kind, every
    flavor tried, wait, run time, cost), per service (replicas over time), per queue (usage over
    time) and the cost by team and provisioning mode, with reservations' idle hours."""
    from ..config import load_config
    from ..fleetsim import load_fleet_scenario, simulate_fleet

    horizon = None
    if until is not None:
        try:
            horizon = parse_duration(until)
        except ValueError as e:
            _fail([f"--until: {e}"])
        if horizon is not None and horizon <= 0:
            _fail(["--until: must be more than 0 seconds"])
    try:
        platform = load_config([str(p) for p in config])
        spec = load_fleet_scenario(scenario)
        report = simulate_fleet(platform, spec, until=horizon, file=str(scenario))
    except SpecError as e:
        _fail(list(e.problems))
    if as_json:
        print_json(report)
        return
    print_tables(report)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def print_tables(report: dict[str, Any]) -> None:
    s = report["summary"]
    console.print(f"simulated {_fmt_s(report['seconds'])} from {report['start']} (stopped: {report['stoppedBy']}): "
                  f"{s['jobs']} job(s) {s['byState']}, {s['services']} service(s), {s['restarts']} restart(s), {s['disruptions']} disruption(s)")
    jobs = Table(title="Jobs")
    for col in ("job", "queue", "state", "attempts", "restarts", "disruptions", "flavors tried", "wait", "run", "cost $"):
        jobs.add_column(col)
    for j in report["jobs"]:
        kinds = ", ".join(f"{k} {n}" for k, n in j["disruptionsByKind"].items())
        jobs.add_row(j["name"], j["queue"], j["state"], str(j["attempts"]), str(j["restarts"]),
                     f"{j['disruptions']}" + (f" ({kinds})" if kinds else ""), " > ".join(j["flavorsTried"]),
                     _fmt_s(j["waitSeconds"]), _fmt_s(j["runSeconds"]), f"{j['costUsd']:.2f}")
    console.print(jobs)
    if report["services"]:
        svcs = Table(title="Services")
        for col in ("service", "queue", "state", "flavor", "replicas (t: granted/running)", "cost $"):
            svcs.add_column(col)
        for sv in report["services"]:
            steps = ", ".join(f"{_fmt_s(r['t'])}: {r['granted']}/{r['running']}" for r in sv["replicas"][-6:])
            svcs.add_row(sv["name"], sv["queue"], sv["state"], sv["flavor"] or "-", steps, f"{sv['costUsd']:.2f}")
        console.print(svcs)
    cost = Table(title="Cost by team and mode")
    for col in ("team", "workload", "mode", "host-hours", "USD"):
        cost.add_column(col)
    for line in report["cost"]["lines"]:
        cost.add_row(line["team"] or (line.get("pool") or "-"), line["workload"] or "-", line["mode"], f"{line['hostHours']:.2f}", f"{line['usd']:.2f}")
    console.print(cost)
    console.print(f"total ${report['cost']['totalUsd']:.2f}; by mode: " + ", ".join(f"{k} ${v:.2f}" for k, v in report["cost"]["byMode"].items()))
    for note in report["notes"]:
        console.print(f"note: {note}")
