"""``rayfleet up | down | serve``: the embedded default on one machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from ..config import default_config_path, load_config
from .common import credentials, data_dir
from .output import console, err_console

ConfigOpt = typer.Option(None, "--config", "-c", help="Cluster config files (default: cluster_configs/local.yaml).")
BackendOpt = typer.Option(None, "--backend", help="Override the Cluster's backend: local, kuberay or sim (simulated hosts, no Ray; see docs/sim.md).")


AllowNewDbOpt = typer.Option(False, "--allow-new-database", help=(
    "Start with a new, empty database although the data directory holds an earlier service's state "
    "(credentials, runs, logs): every job is forgotten and every token rotated. Also $RAYFLEET_ALLOW_NEW_DATABASE=1."))
MetricsPublicOpt = typer.Option(False, "--metrics-public", help=(
    "Serve /metrics without a token (it shows every team's jobs and cost; by default it needs an admin token)."))


def _configs(config: list[Path] | None) -> list[Path]:
    return list(config) if config else [default_config_path()]


def serve(
    config: list[Path] = ConfigOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1 unless told otherwise)."),
    port: int = typer.Option(8265, "--port", help="Port: rayfleet's API and Ray's Jobs API (ray job submit --address)."),
    data: Path = typer.Option(None, "--data-dir", help="Data directory (default: $RAYFLEET_HOME/data)."),
    allow_new_database: bool = AllowNewDbOpt,
    metrics_public: bool = MetricsPublicOpt,
    backend: str = BackendOpt,
) -> None:
    """Run the control service in the foreground."""
    from ..server.main import serve as run

    run(_configs(config), data or data_dir(), host=host, port=port, allow_new_database=allow_new_database,
        metrics_public=metrics_public, backend=_backend_kind(backend))


def _backend_kind(backend: str | None) -> str | None:
    if backend is not None and backend not in ("local", "kuberay", "sim"):
        from ..errors import FieldProblem, SpecError

        raise SpecError(FieldProblem(field="--backend", problem=f"must be local, kuberay or sim, got {backend!r}"))
    return backend


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def up(
    config: list[Path] = ConfigOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8265, "--port", help="Port of rayfleet's API and Ray Jobs API."),
    timeout: float = typer.Option(300, "--timeout", help="Seconds to wait for the cluster and service."),
    allow_new_database: bool = AllowNewDbOpt,
    metrics_public: bool = MetricsPublicOpt,
    backend: str = BackendOpt,
) -> None:
    """Start the local Ray cluster and the control service in the background; print addresses and tokens."""
    from ..server.storage_guard import check_startup

    paths = _configs(config)
    cfg = load_config(paths)  # fail fast (exit 2) on a bad config, before starting anything
    kind = _backend_kind(backend) or (cfg.cluster.spec.backend if cfg.cluster else "local")
    if kind == "sim":  # a bad scenario file fails here too
        from ..backends.sim import from_config

        from_config(cfg)
    ddir = data_dir()
    ddir.mkdir(parents=True, exist_ok=True)
    check_startup(ddir, allow_new_database=allow_new_database)  # exit 2: no new database over old state
    svc_file = ddir / "service.json"
    if svc_file.exists():
        svc = json.loads(svc_file.read_text())
        if _pid_alive(svc.get("pid", -1)):
            console.print(f"rayfleet is already up at {svc['url']} (pid {svc['pid']})")
            _print_access(svc["url"])
            return
        svc_file.unlink()
    log = open(ddir / "service.log", "ab")
    cmd = [sys.executable, "-m", "rayfleet.cli", "serve", "--host", host, "--port", str(port), "--data-dir", str(ddir)]
    for p in paths:
        cmd += ["--config", str(p)]
    cmd += ["--allow-new-database"] * allow_new_database + ["--metrics-public"] * metrics_public
    if backend:
        cmd += ["--backend", backend]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://{host}:{port}"
    console.print(f"starting rayfleet (pid {proc.pid}); log: {ddir / 'service.log'}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err_console.print(f"[red]the control service exited with code {proc.returncode}[/red]; last log lines:")
            err_console.print((ddir / "service.log").read_text()[-3000:])
            raise typer.Exit(1)
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200 and svc_file.exists():
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        err_console.print(f"[red]rayfleet did not answer at {url} within {timeout:.0f}s[/red]")
        raise typer.Exit(1)
    _print_access(url)


def _print_access(url: str) -> None:
    creds = credentials()
    console.print(f"[green]rayfleet is up[/green]\n  API and Ray Jobs API: {url}   (docs: {url}/docs)")
    svc_file = data_dir() / "service.json"
    ray_info = json.loads(svc_file.read_text()).get("ray") if svc_file.exists() else None
    for key in ("address", "dashboard_url", "serve_url"):
        if ray_info and ray_info.get(key):
            console.print(f"  Ray {key.replace('_', ' ')}: {ray_info[key]}")
    console.print(f"  admin token: {creds.get('admin')}")
    for team, tok in sorted(creds.get("teams", {}).items()):
        console.print(f"  team {team} token: {tok}")
    console.print(f"  e.g. RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<team token> ray job submit --address {url} -- python -c 'print(1)'")


def down(
    config: list[Path] = ConfigOpt,
    timeout: float = typer.Option(60, "--timeout", help="Seconds to wait for the service to stop."),
    backend: str = BackendOpt,
) -> None:
    """Stop the control service and the local Ray cluster (no Ray process is left)."""
    ddir = data_dir()
    svc_file = ddir / "service.json"
    if svc_file.exists():
        pid = json.loads(svc_file.read_text()).get("pid", -1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        svc_file.unlink(missing_ok=True)
    from ..backends import make_backend

    cfg = load_config(_configs(config))
    make_backend(cfg, ddir, kind=_backend_kind(backend)).down()
    console.print("rayfleet is down")
