"""``rayfleet export --target gke --config FILE... -o DIR``"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_config
from ..errors import ConfigError
from .output import console, err_console

TARGETS = ("gke",)


def export(
    target: str = typer.Option("gke", "--target", help="What to export for: gke (KubeRay, GKE ComputeClasses, Kueue)."),
    config: list[Path] = typer.Option(..., "--config", help="Config files (cluster_configs/*.yaml); repeat for several."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory to write the manifests to (created if needed)."),
) -> None:
    """Write every manifest of a config as YAML, one object kind per file, ready for `kubectl apply -f DIR`."""
    if target not in TARGETS:
        err_console.print(f"[red]error[/red] --target: unknown target {target!r}; expected one of {', '.join(TARGETS)}")
        raise typer.Exit(2)
    from ..backends.kuberay.export import write_export

    try:
        cfg = load_config(config)
        result = write_export(cfg, out, sources=[str(p) for p in config])
    except ConfigError as e:
        for problem in e.problems:
            err_console.print(f"[red]error[/red] {problem}")
        err_console.print(f"{len(e.problems)} problem(s) found")
        raise typer.Exit(2) from None
    for rel, objs in result.files.items():
        console.print(f"{out / rel}: {len(objs)} {objs[0]['kind']}")
    console.print(f"[green]ok[/green] {len(result.objects())} object(s) in {len(result.files)} file(s); see {out / 'README.md'}")
    for note in result.notes:
        console.print(f"[yellow]note[/yellow] {note}")
