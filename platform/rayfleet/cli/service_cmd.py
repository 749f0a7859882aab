"""``rayfleet service deploy | list | status | delete``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydantic
import typer
import yaml
from rich.table import Table

from ..api import Service
from ..config import pydantic_problems
from ..errors import SpecError
from .common import TeamOpt, TokenOpt, UrlOpt, connect
from .output import console, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("deploy")
def deploy(
    file: Path = typer.Option(None, "-f", "--file", help="A Service YAML file."),
    name: str = typer.Option(None, "--name", help="Service name."),
    import_path: str = typer.Option(None, "--import-path", help="Serve app, module:attribute (e.g. serve_apps.pipeline:app)."),
    queue: str = typer.Option(None, "--queue", "-q", help="Queue whose quota the replicas use."),
    hosts: int = typer.Option(1, "--hosts-per-replica", help="Hosts per replica (leader + workers)."),
    gpus: int = typer.Option(None, "--gpus", help="nvidia.com/gpu per host."),
    tpus: int = typer.Option(None, "--tpus", help="google.com/tpu per host."),
    accelerator: str = typer.Option(None, "--accelerator", help="GKE accelerator name."),
    min_replicas: int = typer.Option(1, "--min-replicas"),
    max_replicas: int = typer.Option(1, "--max-replicas"),
    route_prefix: str = typer.Option(None, "--route-prefix", help="HTTP route prefix (default /<name>)."),
    args: str = typer.Option(None, "--args", help="JSON arguments of the app builder."),
    wait: bool = typer.Option(False, "--wait", help="Wait until a replica serves."),
    url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt,
) -> None:
    """Deploy a Serve service whose replicas are leader-worker groups."""
    if file is not None:
        try:
            body = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise typer.BadParameter(f"{file}: {e}") from None
    else:
        if not (name and import_path and queue):
            raise typer.BadParameter("give -f FILE, or --name, --import-path and --queue")
        res: dict = {"cpu": "500m"}
        if gpus:
            res["nvidia.com/gpu"] = gpus
        if tpus:
            res["google.com/tpu"] = tpus
        rg: dict = {"hostsPerReplica": hosts, "resourcesPerHost": res}
        if accelerator:
            rg["accelerator"] = accelerator
        body = {"metadata": {"name": name}, "spec": {
            "importPath": import_path, "queue": queue, "replicaGroup": rg, "routePrefix": route_prefix or f"/{name}",
            "autoscaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas}, "args": json.loads(args) if args else {}}}
    try:
        svc = Service.model_validate(body)
    except pydantic.ValidationError as e:
        raise SpecError(pydantic_problems(e, file=str(file) if file else None, document=None)) from None
    handle = connect(url, token, team).deploy(svc)
    console.print(f"service [bold]{handle.name}[/bold]: {handle.data['status']['state']} — {handle.data['status']['message']}")
    if wait:
        st = handle.wait_running(timeout=300)
        console.print(f"running: {st['replicasRunning']} replica(s) at {st.get('url')}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json"), url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """Services you may see."""
    svcs = connect(url, token, team).services()
    if as_json:
        print_json(svcs)
        return
    t = Table("name", "queue", "state", "wanted", "granted", "running", "url")
    for s in svcs:
        st = s["status"]
        t.add_row(s["metadata"]["name"], s["spec"]["queue"], st["state"], str(st["replicasWanted"]), str(st["replicasGranted"]),
                  str(st["replicasRunning"]), st.get("url") or "")
    console.print(t)


@app.command("status")
def status(name: str, as_json: bool = typer.Option(False, "--json"), url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """One service: replicas wanted, granted, running, and why."""
    st = connect(url, token, team).service(name).status()
    if as_json:
        print_json(st)
        return
    for k in ("state", "replicasWanted", "replicasGranted", "replicasRunning", "flavor", "url", "message"):
        console.print(f"{k}: {st.get(k)}")


@app.command("delete")
def delete(name: str, wait: bool = typer.Option(True, "--wait/--no-wait"), url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """Delete a service (replicas drain first)."""
    handle = connect(url, token, team).service(name)
    handle.delete()
    while wait and handle.status()["state"] != "DELETED":
        time.sleep(0.5)
    console.print(f"service {name} deleted")
