"""The ``rayfleet`` command line (typer + rich).

Sub-commands live in their own modules (``config_cmd``, ``quota_cmd``, ...) and are registered here.
Errors that are the user's fault print what is wrong and exit with code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import RayfleetError, is_user_error
from .output import err_console

app = typer.Typer(
    name="rayfleet",
    help="rayfleet: quota-admitted Ray Train gangs and multi-host Ray Serve replicas, locally or on GKE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, attribute, name, help): sub-apps are typer.Typer objects, commands are functions.
_SUBAPPS = [
    ("config_cmd", "app", "config", "Check cluster config files."),
    ("quota_cmd", "app", "quota", "Simulate quota decisions."),
    ("simulate_cmd", "app", "simulate", "Simulate the fleet: the control service on simulated capacity and time."),
    ("job_cmd", "app", "job", "Submit and follow training jobs."),
    ("queue_cmd", "app", "queue", "Show queues: usage, borrowing, waiting workloads."),
    ("service_cmd", "app", "service", "Deploy and manage Serve services."),
    ("token_cmd", "app", "token", "Mint, list and revoke API tokens (admin)."),
    ("cluster_cmd", "app", "cluster", "List clusters; cordon, drain and uncordon one (admin)."),
]
_COMMANDS = [
    ("export_cmd", "export", "export"),
    ("up_cmd", "up", "up"),
    ("up_cmd", "down", "down"),
    ("up_cmd", "serve", "serve"),
    ("demo_cmd", "demo", "demo"),
]


def _register() -> None:
    for module, attr, name, help_text in _SUBAPPS:
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{module}":
                continue
            raise
        app.add_typer(getattr(mod, attr), name=name, help=help_text)
    for module, attr, name in _COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{module}":
                continue
            raise
        app.command(name=name)(getattr(mod, attr))


_register()


def main() -> None:
    try:
        app()
    except RayfleetError as e:
        err_console.print(f"[red]error:[/red] {e.message}", highlight=False)
        sys.exit(2 if is_user_error(e) else 1)
