"""``rayfleet config check FILE...``"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_config
from ..errors import ConfigError
from .output import console, err_console

app = typer.Typer(no_args_is_help=True)


@app.command("check")
def check(
    files: list[Path] = typer.Argument(..., help="Config files (cluster_configs/*.yaml)."),
    together: bool = typer.Option(False, "--together", help="The files are parts of one platform: check them as one (default: each file is a platform of its own)."),
) -> None:
    """Validate config files and their cross-references; exit 2 on any error."""
    groups = [files] if together else [[f] for f in files]
    failed = 0
    for group in groups:
        try:
            cfg = load_config(group)
        except ConfigError as e:
            for problem in e.problems:
                err_console.print(f"[red]error[/red] {problem}", markup=True)
            failed += len(e.problems)
            continue
        kinds = sorted({o.KIND for o in cfg.objects()})
        summary = ", ".join(f"{sum(1 for o in cfg.objects() if o.KIND == k)} {k}" for k in kinds)
        console.print(f"[green]ok[/green] {', '.join(map(str, group))}: {summary}")
    if failed:
        err_console.print(f"{failed} problem(s) found")
        raise typer.Exit(2)
