"""``rayfleet config check FILE...``"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_config
from ..errors import ConfigError
from .output import console, err_console

app = typer.Typer(no_args_is_help=True)


@app.command("check")
def check(files: list[Path] = typer.Argument(..., help="Config files (cluster_configs/*.yaml).")) -> None:
    """Validate config files and their cross-references; exit 2 on any error."""
    try:
        cfg = load_config(files)
    except ConfigError as e:
        for problem in e.problems:
            err_console.print(f"[red]error[/red] {problem}")
        err_console.print(f"{len(e.problems)} problem(s) found")
        raise typer.Exit(2) from None
    counts = {kind: sum(1 for o in cfg.objects() if o.KIND == kind) for kind in sorted({o.KIND for o in cfg.objects()})}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    console.print(f"[green]ok[/green] {len(files)} file(s): {summary}")
