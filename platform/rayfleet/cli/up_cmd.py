"""``rayfleet up | down | serve``: the embedded default on one machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import typer

from ..config import default_config_path, load_config
from .common import data_dir
from .output import console, err_console

ConfigOpt = typer.Option(None, "--config", "-c", help="Cluster config files (default: cluster_configs/local.yaml).")


def _configs(config: list[Path] | None) -> list[Path]:
    return list(config) if config else [default_config_path()]


def serve(
    config: list[Path] = ConfigOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1 unless told otherwise)."),
    port: int = typer.Option(8265, "--port", help="Port: rayfleet's API and Ray's Jobs API (ray job submit --address)."),
    data: Path = typer.Option(None, "--data-dir", help="Data directory (default: $RAYFLEET_HOME/data)."),
    credentials_out: Path = typer.Option(None, "--credentials-out", help=(
        "Write the tokens minted at this start to FILE (JSON, mode 0600; outside the data directory). "
        "Without it they are printed once on stderr.")),
) -> None:
    """Run the control service in the foreground."""
    from ..backends import local_client_env

    paths, ddir = _configs(config), data or data_dir()
    # The service talks to its local cluster in Ray's token mode; Ray reads the mode once, when it
    # is imported, so the environment is set before the server modules (which import Ray) load.
    os.environ.update(local_client_env(load_config(paths), ddir))
    from ..server.main import serve as run

    run(paths, ddir, host=host, port=port, credentials_out=credentials_out)


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
    credentials_out: Path = typer.Option(None, "--credentials-out", help=(
        "Also write the tokens minted now to FILE (JSON {admin, teams}, mode 0600, outside the data directory); "
        "the CLI reads that file when given as $RAYFLEET_CREDENTIALS.")),
) -> None:
    """Start the local Ray cluster and the control service in the background; print addresses, and
    the tokens minted at the first start (shown once: only their hashes are kept)."""
    from ..server.tokens import check_credentials_out, write_credentials

    paths = _configs(config)
    load_config(paths)  # fail fast (exit 2) on a bad config, before starting anything
    ddir = data_dir()
    if credentials_out is not None:
        check_credentials_out(credentials_out, ddir)
    ddir.mkdir(parents=True, exist_ok=True)
    svc_file = ddir / "service.json"
    if svc_file.exists():
        svc = json.loads(svc_file.read_text())
        if _pid_alive(svc.get("pid", -1)):
            console.print(f"rayfleet is already up at {svc['url']} (pid {svc['pid']})")
            _print_access(svc["url"], {})
            return
        svc_file.unlink()
    log = open(ddir / "service.log", "ab")
    # The service hands the tokens it mints to a private file of ours, outside the data directory.
    handoff_dir = Path(tempfile.mkdtemp(prefix="rayfleet-up-"))
    handoff = handoff_dir / "minted.json"
    cmd = [sys.executable, "-m", "rayfleet.cli", "serve", "--host", host, "--port", str(port), "--data-dir", str(ddir),
           "--credentials-out", str(handoff)]
    for p in paths:
        cmd += ["--config", str(p)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://{host}:{port}"
    console.print(f"starting rayfleet (pid {proc.pid}); log: {ddir / 'service.log'}")
    try:
        _wait_up(proc, url, svc_file, ddir, timeout)
        minted = json.loads(handoff.read_text()) if handoff.exists() else {}
    finally:
        shutil.rmtree(handoff_dir, ignore_errors=True)
    if credentials_out is not None:
        write_credentials(credentials_out, minted)
    _print_access(url, minted, credentials_out)


def _wait_up(proc: subprocess.Popen, url: str, svc_file: Path, ddir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err_console.print(f"[red]the control service exited with code {proc.returncode}[/red]; last log lines:")
            err_console.print((ddir / "service.log").read_text()[-3000:])
            raise typer.Exit(1)
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200 and svc_file.exists():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    err_console.print(f"[red]rayfleet did not answer at {url} within {timeout:.0f}s[/red]")
    raise typer.Exit(1)


def _print_access(url: str, minted: dict, credentials_out: Path | None = None) -> None:
    console.print(f"[green]rayfleet is up[/green]\n  API and Ray Jobs API: {url}   (docs: {url}/docs)")
    svc_file = data_dir() / "service.json"
    ray_info = json.loads(svc_file.read_text()).get("ray") if svc_file.exists() else None
    for key in ("address", "dashboard_url", "serve_url"):
        if ray_info and ray_info.get(key):
            console.print(f"  Ray {key.replace('_', ' ')}: {ray_info[key]}")
    if minted.get("admin") or minted.get("teams"):
        console.print("  tokens minted now (shown once; rayfleet keeps only their hashes):")
        if minted.get("admin"):
            console.print(f"  admin token: {minted['admin']}")
        for team, tok in sorted((minted.get("teams") or {}).items()):
            console.print(f"  team {team} token: {tok}")
        if credentials_out is not None:
            console.print(f"  (also written to {credentials_out}, mode 0600)")
    else:
        console.print("  no token minted now (tokens are shown once, when minted); an admin makes more with "
                      "`rayfleet token create --team TEAM`")
    console.print(f"  e.g. RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<team token> ray job submit --address {url} -- python -c 'print(1)'")


def down(
    config: list[Path] = ConfigOpt,
    timeout: float = typer.Option(60, "--timeout", help="Seconds to wait for the service to stop."),
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
    make_backend(cfg, ddir).down()
    console.print("rayfleet is down")
