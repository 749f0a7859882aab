"""``rayfleet cluster list | cordon NAME [--drain] | uncordon NAME`` (several Cluster documents)."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import TeamOpt, TokenOpt, UrlOpt, connect
from .output import console, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json"), url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """Clusters: backend, pools, whether each answers, cordons and why."""
    clusters = connect(url, token, team).clusters()
    if as_json:
        print_json(clusters)
        return
    t = Table("cluster", "backend", "pools", "state", "cordon")
    for c in clusters:
        st = c["status"]
        cordon = ""
        if st.get("cordoned"):
            cordon = ("drained" if st.get("drain") else "cordoned") + (" (automatically)" if st.get("cordonedAutomatically") else "")
            cordon += f": {st.get('cordonReason')}" if st.get("cordonReason") else ""
        t.add_row(c["metadata"]["name"], st.get("backend") or "", ", ".join(c.get("spec", {}).get("pools") or []) or "all",
                  st.get("state", ""), cordon)
    console.print(t)


@app.command("cordon")
def cordon(name: str, drain: bool = typer.Option(False, "--drain", help=(
               "Also move its work: running jobs checkpoint and resume on another cluster; services come up elsewhere before they go.")),
           reason: str = typer.Option("", "--reason", help="Why (kept with the cordon and its event)."),
           url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """Admin: the cluster gets no new work; queued work goes to the others."""
    c = connect(url, token, team).cordon_cluster(name, drain=drain, reason=reason)
    console.print(f"cluster {name} {'drained' if c['status']['drain'] else 'cordoned'}")


@app.command("uncordon")
def uncordon(name: str, url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """Admin: the cluster takes new work again."""
    connect(url, token, team).uncordon_cluster(name)
    console.print(f"cluster {name} uncordoned")
