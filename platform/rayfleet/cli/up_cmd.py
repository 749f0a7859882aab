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
BackendOpt = typer.Option(None, "--backend", help="Override the Cluster's backend: local, kuberay or sim (simulated hosts, no Ray; see docs/sim.md).")


AllowNewDbOpt = typer.Option(False, "--allow-new-database", help=(
    "Start with a new, empty database although the data directory holds an earlier service's state "
    "(credentials, runs, logs): every job is forgotten and every token rotated. Also $RAYFLEET_ALLOW_NEW_DATABASE=1."))
StoreOpt = typer.Option(None, "--store", envvar="RAYFLEET_STORE", show_envvar=False, help=(
    "The database: a postgresql://user:password@host:port/db URL (several control services may share it), "
    "or a SQLite file's path. Default: rayfleet.db in the data directory. Also $RAYFLEET_STORE "
    "(better for a URL with a password: a command line is visible to every user of the machine)."))
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
    store: str = StoreOpt,
    lease_duration: float = typer.Option(10.0, "--lease-duration", help=(
        "Replicas on one PostgreSQL store: seconds without a renewal of the leader's lease before another replica takes over.")),
    renew_deadline: float = typer.Option(7.0, "--renew-deadline", help=(
        "Seconds a leader that cannot renew its lease keeps leading (less than --lease-duration).")),
    retry_period: float = typer.Option(2.0, "--retry-period", help="Seconds between a replica's tries to renew or take the lease."),
    credentials_out: Path = typer.Option(None, "--credentials-out", help=(
        "Write the tokens minted at this start to FILE (JSON, mode 0600; outside the data directory). "
        "Without it they are printed once on stderr.")),
) -> None:
    """Run the control service in the foreground."""
    from ..backends import local_client_env
    from ..server.leader import ElectionTiming
    from ..server.store import is_url

    paths, ddir = _configs(config), data or data_dir()
    timing = ElectionTiming(lease_duration, renew_deadline, retry_period)   # exit 2 when they do not fit together
    # The service talks to its local cluster in Ray's token mode; Ray reads the mode once, when it
    # is imported, so the environment is set before the server modules (which import Ray) load.
    os.environ.update(local_client_env(load_config(paths), ddir))
    from ..server.main import serve as run

    run(paths, ddir, host=host, port=port, allow_new_database=allow_new_database, metrics_public=metrics_public,
        backend=_backend_kind(backend), credentials_out=credentials_out, store=store,
        election=timing if is_url(store or "") else None)   # (a SQLite file has one service: no election)


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
    store: str = StoreOpt,
    credentials_out: Path = typer.Option(None, "--credentials-out", help=(
        "Also write the tokens minted now to FILE (JSON {admin, teams}, mode 0600, outside the data directory); "
        "the CLI reads that file when given as $RAYFLEET_CREDENTIALS.")),
) -> None:
    """Start the local Ray cluster and the control service in the background; print addresses, and
    the tokens minted at the first start (shown once: only their hashes are kept)."""
    from ..server.storage_guard import check_store_startup
    from ..server.store import STORE_ENV, store_target
    from ..server.tokens import check_credentials_out, write_credentials

    paths = _configs(config)
    cfg = load_config(paths)  # fail fast (exit 2) on a bad config, before starting anything
    kind = _backend_kind(backend) or (cfg.cluster.spec.backend if cfg.cluster else "local")
    if kind == "sim":  # a bad scenario file fails here too
        from ..backends.sim import from_config

        from_config(cfg)
    ddir = data_dir()
    if credentials_out is not None:
        check_credentials_out(credentials_out, ddir)
    ddir.mkdir(parents=True, exist_ok=True)
    target = store_target(store, ddir)   # exit 2: not a store
    check_store_startup(target, ddir, allow_new_database=allow_new_database)  # exit 2: no new database over old state
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
    cmd += ["--allow-new-database"] * allow_new_database + ["--metrics-public"] * metrics_public
    if backend:
        cmd += ["--backend", backend]
    env = {**os.environ, STORE_ENV: store} if store else None   # in the environment: a URL's password stays off the command line
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
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
