"""``rayfleet simulate fleet --config CONFIG --scenario SCENARIO.yaml [--until DURATION] [--json] [--plot DIR]``
and ``rayfleet simulate trace --gpus N --teams N --days D --seed N [-o DIR]``."""

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
    plot: Path | None = typer.Option(None, "--plot", help="Write PNG pictures of the report into this directory (utilisation per accelerator, queue depth per team, wait times per priority; docs/scale.md)."),
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
    if plot is not None:
        from ..fleetsim.plots import write_plots

        try:
            written = write_plots({"rayfleet": report}, plot, platform)
        except OSError as e:
            _fail([f"--plot: cannot write to {plot}: {e.strerror or e}"])
        err_console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    if as_json:
        print_json(report)
        return
    print_tables(report)


@app.command("trace")
def trace_cmd(
    gpus: int = typer.Option(10000, "--gpus", help="Accelerators in the fleet (GPUs and TPU chips), shared between the pools as on the talk's platform."),
    teams: int = typer.Option(100, "--teams", help="Teams (one queue each; every fifth serves, the rest train), in cohorts of 10."),
    days: float = typer.Option(7.0, "--days", help="Length of the trace in days (fractions allowed, e.g. 0.05)."),
    seed: int = typer.Option(1, "--seed", help="Seed of every random draw: the same seed writes byte-identical files."),
    out: Path = typer.Option(Path("fleet-trace"), "--out", "-o", help="Directory to write config.yaml (the platform) and scenario.yaml (the fleet scenario) into."),
) -> None:
    """Write a GKE-scale fleet trace: a platform config (T4 on demand; L4 reservation with DWS
    flex-start and spot behind it; A100 reserved; H100 through DWS; TPU v5e/v6e slices; teams in
    cohorts) and a fleet scenario on it (training gangs, inference services with a daily load curve,
    spot reclaims and host faults). Run it with
    `rayfleet simulate fleet --config DIR/config.yaml --scenario DIR/scenario.yaml`."""
    from ..fleetsim.trace import generate, problems, render

    bad = problems(gpus, teams, days)
    if bad:
        _fail(bad)
    trace = generate(gpus, teams, days, seed)
    config_text, scenario_text = render(trace)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(config_text)
        (out / "scenario.yaml").write_text(scenario_text)
    except OSError as e:
        _fail([f"--out: cannot write to {out}: {e.strerror or e}"])
    s = trace.summary
    console.print(f"wrote {out / 'config.yaml'} and {out / 'scenario.yaml'}: {s['accelerators']} accelerators "
                  f"({', '.join(f'{k} {v}' for k, v in s['byFamily'].items())}) on {s['hosts']} hosts, {s['teams']} teams "
                  f"({s['inferenceTeams']} inference) in {s['cohorts']} cohort(s), {s['jobs']} jobs, {s['services']} services, "
                  f"{s['reclaims']} spot reclaims, {s['losses']} host losses, {s['faults']} host faults over {s['seconds'] / 86400:g} days", highlight=False)


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
