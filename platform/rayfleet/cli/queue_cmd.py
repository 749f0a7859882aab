"""``rayfleet queue list | show``."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import TeamOpt, TokenOpt, UrlOpt, connect
from .output import console, estimated_start, print_json

app = typer.Typer(no_args_is_help=True)


def _fmt(table: dict) -> str:
    return "; ".join(f"{flavor}: " + ", ".join(f"{v} {r}" for r, v in res.items()) for flavor, res in table.items()) or "-"


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json"), url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """Queues: usage, borrowed, lent, pending and admitted."""
    queues = connect(url, token, team).queues()
    if as_json:
        print_json(queues)
        return
    t = Table("queue", "team", "cohort", "usage", "borrowed", "lent", "pending", "admitted")
    for q in queues:
        st = q["status"]
        t.add_row(q["metadata"]["name"], q["spec"]["team"], q["spec"].get("cohort") or "", _fmt(st["usage"]), _fmt(st["borrowed"]),
                  _fmt(st["lent"]), str(st["pending"]), str(st["admitted"]))
    console.print(t)


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json"), url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """One queue, with why each waiting workload waits."""
    q = connect(url, token, team).queue(name)
    if as_json:
        print_json(q)
        return
    st = q["status"]
    console.print(f"[bold]{name}[/bold] (team {q['spec']['team']}, cohort {q['spec'].get('cohort')})")
    for label in ("nominal", "usage", "borrowed", "lent"):
        console.print(f"  {label}: {_fmt(st[label])}")
    console.print(f"  admitted: {', '.join(st['admittedWorkloads']) or '-'}")
    t = Table("pos", "workload", "code", "reason", "could preempt", "estimated start")
    for w in st["waiting"]:
        t.add_row(str(w["position"]), w["workload"], w["code"], w["reason"], ", ".join(w["couldPreempt"]), estimated_start(w) or "-")
    console.print(t)
