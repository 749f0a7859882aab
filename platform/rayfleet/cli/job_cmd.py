"""``rayfleet job submit | list | status | logs | stop``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
import yaml
from rich.live import Live
from rich.table import Table

from ..api import TrainJob
from ..config import pydantic_problems
from ..errors import SpecError
from .common import TeamOpt, TokenOpt, UrlOpt, connect
from .output import console, estimated_start, print_json

app = typer.Typer(no_args_is_help=True)


def _load_spec(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise typer.BadParameter(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: expected a TrainJob mapping")
    return data


@app.command("submit")
def submit(
    command: list[str] = typer.Argument(None, help="Entrypoint command (after --), as with `ray job submit -- CMD`."),
    file: Path = typer.Option(None, "-f", "--file", help="A TrainJob YAML file."),
    name: str = typer.Option(None, "--name", help="Job id (idempotent resubmission); default: generated."),
    queue: str = typer.Option(None, "--queue", "-q", help="Queue to submit to."),
    priority: str = typer.Option(None, "--priority", help="Priority class."),
    app_module: str = typer.Option(None, "--app", help="Train app module (e.g. train_apps.ddp_synthetic) instead of a command."),
    app_config: str = typer.Option(None, "--app-config", help="JSON config for the train app."),
    workers: int = typer.Option(1, "--workers", "-n", help="Gang size."),
    cpus: float = typer.Option(None, "--cpus", help="CPUs per worker."),
    gpus: int = typer.Option(None, "--gpus", help="nvidia.com/gpu per worker."),
    tpus: int = typer.Option(None, "--tpus", help="google.com/tpu chips per worker."),
    accelerator: str = typer.Option(None, "--accelerator", help="GKE accelerator name, e.g. nvidia-h100-80gb."),
    max_restarts: int = typer.Option(None, "--max-restarts", help="Failure restarts before the job fails."),
    wait: bool = typer.Option(False, "--wait", help="Show a live view until the job ends."),
    url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt,
) -> None:
    """Submit a training job through quota admission."""
    import secrets

    if file is not None:
        body = _load_spec(file)
    else:
        if not queue:
            raise typer.BadParameter("--queue is required (or give -f FILE)", param_hint="--queue")
        res: dict = {}
        if cpus is not None:
            res["cpu"] = f"{round(cpus * 1000)}m"
        if gpus:
            res["nvidia.com/gpu"] = gpus
        if tpus:
            res["google.com/tpu"] = tpus
        spec: dict = {"queue": queue, "gang": {"workers": workers, "resourcesPerWorker": res or {"cpu": "500m"}}}
        if accelerator:
            spec["gang"]["accelerator"] = accelerator
        if priority:
            spec["priorityClass"] = priority
        if max_restarts is not None:
            spec["failurePolicy"] = {"maxRestarts": max_restarts}
        if app_module:
            spec["trainApp"] = {"module": app_module, "config": json.loads(app_config) if app_config else {}}
        elif command:
            spec["entrypoint"] = " ".join(command)
        body = {"metadata": {"name": name or f"job-{secrets.token_hex(4)}"}, "spec": spec}
    try:
        job = TrainJob.model_validate(body)
    except Exception as e:  # pydantic.ValidationError -> exit 2 naming the field
        import pydantic

        if isinstance(e, pydantic.ValidationError):
            raise SpecError(pydantic_problems(e, file=str(file) if file else None, document=None)) from None
        raise
    fleet = connect(url, token, team)
    handle = fleet.submit(job)
    console.print(f"submitted [bold]{handle.name}[/bold]: {handle.data['status']['state']} — {handle.data['status']['message']}")
    if wait:
        _live(fleet, handle.name)


def _status_table(job: dict, queue_view: dict | None) -> Table:
    st = job["status"]
    t = Table(title=f"job {job['metadata']['name']}", show_header=False)
    t.add_row("state", st["state"])
    t.add_row("queue", job["spec"]["queue"])
    if st.get("flavor"):
        t.add_row("flavor / pool", f"{st['flavor']} / {st.get('pool')}")
    if st.get("cluster"):
        t.add_row("cluster", st["cluster"])
    t.add_row("attempt", str(st.get("attempt", 0)))
    if st.get("pendingReason"):
        t.add_row("pending reason", st["pendingReason"])
    if (when := estimated_start(st)) is not None:
        t.add_row("estimated start", when)
    if queue_view:
        for w in queue_view["status"]["waiting"]:
            if w["workload"] == job["metadata"]["name"]:
                t.add_row("position", str(w["position"]))
                t.add_row("reason", w["reason"])
    t.add_row("message", st.get("message", ""))
    if st.get("lastCheckpointStep") is not None:
        t.add_row("checkpoint step", str(st["lastCheckpointStep"]))
    if st.get("interruptions"):
        t.add_row("interruptions", ", ".join(f"{i['reason']}@attempt{i['attempt']}" for i in st["interruptions"]))
    return t


def _live(fleet, name: str) -> None:
    with Live(console=console, refresh_per_second=2) as live:
        while True:
            job = fleet.request("GET", f"/api/v1/jobs/{name}")
            qv = None
            if job["status"]["state"] == "QUEUED":
                try:
                    qv = fleet.queue(job["spec"]["queue"])
                except Exception:
                    qv = None
            live.update(_status_table(job, qv))
            if job["status"]["state"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(1)
    if job["status"]["state"] != "SUCCEEDED":
        raise typer.Exit(1)


@app.command("list")
def list_(
    state: list[str] = typer.Option(None, "--state", help="Only these states."),
    queue: str = typer.Option(None, "--queue", help="Only this queue."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt,
) -> None:
    """List jobs you may see."""
    jobs = connect(url, token, team).jobs(state=state or None, queue=queue)
    if as_json:
        print_json(jobs)
        return
    t = Table("name", "queue", "state", "attempt", "flavor", "message")
    for j in jobs:
        st = j["status"]
        t.add_row(j["metadata"]["name"], j["spec"]["queue"], st["state"], str(st.get("attempt", 0)), st.get("flavor") or "", st.get("message", "")[:80])
    console.print(t)


@app.command("status")
def status(
    name: str,
    watch: bool = typer.Option(False, "--watch", "-w", help="Live view until the job ends."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt,
) -> None:
    """Show one job (queue position and reason while it waits)."""
    fleet = connect(url, token, team)
    if watch:
        _live(fleet, name)
        return
    job = fleet.request("GET", f"/api/v1/jobs/{name}")
    if as_json:
        print_json(job)
        return
    qv = fleet.queue(job["spec"]["queue"]) if job["status"]["state"] == "QUEUED" else None
    console.print(_status_table(job, qv))


@app.command("logs")
def logs(
    name: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow until the job ends."),
    url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt,
) -> None:
    """Print a job's logs (all attempts)."""
    handle = connect(url, token, team).job(name)
    if follow:
        for chunk in handle.logs(follow=True):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    else:
        sys.stdout.write(handle.logs())


@app.command("stop")
def stop(name: str, url: str = UrlOpt, token: str = TokenOpt, team: str = TeamOpt) -> None:
    """Stop a job: its whole gang stops and its quota is freed."""
    st = connect(url, token, team).job(name).stop()
    console.print(f"{name}: {st['state']} — {st.get('message', '')}")
