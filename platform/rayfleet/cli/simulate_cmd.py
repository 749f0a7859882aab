"""``rayfleet simulate fleet --config CONFIG --scenario SCENARIO.yaml [--until DURATION] [--json] [--plot DIR]``
[--policy static|kueue|rayfleet|all]
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
    policy: str = typer.Option("rayfleet", "--policy", help="Scheduling policy: static (no borrowing, no quota schedules, no capacity fallback), kueue (Kueue semantics, one head per queue per cycle), rayfleet (the platform as configured), or all (each in turn on the same scenario, side by side; JSON keyed by policy). docs/scale.md."),
) -> None:
    """Run the real store, quota, controller and service manager over the simulated backend on
    simulated time, and report per job (state, attempts, restarts, disruptions by kind, every
    flavor tried, wait, run time, cost), per service (replicas over time), per queue (usage over
    time) and the cost by team and provisioning mode, with reservations' idle hours."""
    from ..config import load_config
    from ..fleetsim import POLICIES, load_fleet_scenario, simulate_policies

    if policy not in (*POLICIES, "all"):
        _fail([f"--policy: {policy!r} is not one of {', '.join((*POLICIES, 'all'))}"])
    chosen = list(POLICIES) if policy == "all" else [policy]
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
        reports = simulate_policies(platform, spec, chosen, until=horizon, file=str(scenario))
    except SpecError as e:
        _fail(list(e.problems))
    if plot is not None:
        from ..fleetsim.plots import write_plots

        try:
            written = write_plots(reports, plot, platform)
        except OSError as e:
            _fail([f"--plot: cannot write to {plot}: {e.strerror or e}"])
        err_console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    if as_json:
        print_json(reports if policy == "all" else reports[policy])
        return
    if policy != "all":
        print_tables(reports[policy])
    print_figures(reports)


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


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_figures(reports: dict[str, dict[str, Any]]) -> None:
    """The policies' figures side by side (one column a policy)."""
    figs = {p: r["figures"] for p, r in reports.items()}
    table = Table(title="Policies" if len(figs) > 1 else f"Figures ({next(iter(figs))})")
    table.add_column("figure")
    for p in figs:
        table.add_column(p)
    classes = sorted({c for f in figs.values() for c in f["waitSeconds"]})
    accels = sorted({a for f in figs.values() for a in f["utilisationWhileBacklog"]["byAccelerator"]})
    teams = sorted({t for f in figs.values() for t in f["costByTeam"]})
    rows: list[tuple[str, list[str]]] = [
        ("utilisation while backlog", [_pct(f["utilisationWhileBacklog"]["overall"]) for f in figs.values()])]
    rows += [(f"  {a}", [_pct(f["utilisationWhileBacklog"]["byAccelerator"].get(a)) for f in figs.values()]) for a in accels]
    for c in classes:
        for q in ("p50", "p99"):
            rows.append((f"wait {q} {c}", [_fmt_s(f["waitSeconds"].get(c, {}).get(q)) for f in figs.values()]))
    rows += [("preemptions", [str(f["preemptions"]) for f in figs.values()]),
             ("goodput", [_pct(f["goodput"]["ratio"]) for f in figs.values()]),
             ("useful / held accelerator-hours", [f"{f['goodput']['usefulAcceleratorHours']:.0f} / {f['goodput']['heldAcceleratorHours']:.0f}"
                                                  for f in figs.values()]),
             ("reservation idle host-hours", [f"{f['reservationIdleHostHours']:.1f}" for f in figs.values()]),
             ("cost total $", [f"{r['cost']['totalUsd']:.2f}" for r in reports.values()])]
    rows += [(f"  cost {t} $", [f"{f['costByTeam'].get(t, 0.0):.2f}" for f in figs.values()]) for t in teams]
    for name, cells in rows:
        table.add_row(name, *cells)
    console.print(table)
