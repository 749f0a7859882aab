"""``rayfleet config check FILE...`` and ``rayfleet config import-kueue FILE...``"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..config import load_config
from ..errors import ConfigError, SpecError
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


@app.command("import-kueue")
def import_kueue(
    files: list[Path] = typer.Argument(..., help="Kueue manifests (YAML; a kubectl List is read item by item)."),
    pools: list[Path] = typer.Option([], "--pools", help="rayfleet config files holding the Pool documents the flavors stand for "
                                                         "(and anything else Kueue lacks); the import is checked together with them."),
    out: Path = typer.Option(None, "-o", "--out", help="File to write the rayfleet documents to (default: standard output)."),
) -> None:
    """Turn a Kueue setup (ClusterQueues, Cohorts, ResourceFlavors, WorkloadPriorityClasses,
    LocalQueues) into rayfleet config documents; exit 2 naming the file and field of anything wrong."""
    import yaml

    from ..backends.kuberay.kueue_import import from_kueue
    from ..config import parse_document

    objects: list[tuple[str, object]] = []
    try:
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "List":
                    objects += [(str(f), item) for item in doc.get("items") or []]
                elif doc is not None:
                    objects.append((str(f), doc))
        base = load_config(pools) if pools else None
        result = from_kueue(objects, base.pools.values() if base is not None else ())  # type: ignore[arg-type]
    except OSError as e:
        err_console.print(f"[red]error[/red] {getattr(e, 'filename', '')}: cannot read: {e.strerror or e}")
        raise typer.Exit(2) from None
    except yaml.YAMLError as e:
        err_console.print(f"[red]error[/red] YAML syntax error: {e}")
        raise typer.Exit(2) from None
    except (ConfigError, SpecError) as e:
        _problems(e.problems)
    text = yaml.safe_dump_all(result.docs, sort_keys=False)
    if pools:   # checked as one platform with the pools: schemas and references
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "imported.yaml"
            path.write_text(text)
            try:
                load_config([*pools, path])
                problems = []
            except ConfigError as e:
                problems = list(e.problems)
    else:       # each document's schema (its pools are not known)
        target = str(out) if out is not None else "(imported)"
        problems = [p for i, doc in enumerate(result.docs) for p in parse_document(doc, file=target, index=i)[1]]
    if problems:
        _problems(problems)
    if out is not None:
        out.write_text(text)
        console.print(f"[green]ok[/green] {out}: {len(result.docs)} document(s)")
    else:
        typer.echo(text, nl=False)
    for note in result.notes:
        err_console.print(f"[yellow]note[/yellow] {note}")


def _problems(problems) -> None:
    for problem in problems:
        err_console.print("[red]error[/red] " + escape(str(problem)))
    err_console.print(f"{len(problems)} problem(s) found")
    raise typer.Exit(2)
