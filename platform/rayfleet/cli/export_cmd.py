"""``rayfleet export --target gke --config FILE... -o DIR``"""

from __future__ import annotations

from collections import Counter
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
    self_: bool = typer.Option(False, "--self", help=(
        "Also the control service itself: Deployment (replicas with leader election), Service, PodDisruptionBudget, "
        "ServiceAccount and RBAC, the platform config as a ConfigMap, a bootstrap admin token Secret, the store's Secret.")),
    image: str = typer.Option(None, "--image", help="With --self: the control service's container image (rayfleet installed, `rayfleet` on PATH)."),
    replicas: int = typer.Option(2, "--replicas", help="With --self: control-service replicas (one leads, the others take over)."),
    store_url: str = typer.Option(None, "--store-url", envvar="RAYFLEET_STORE", show_envvar=False, help=(
        "With --self: the postgresql:// URL the replicas share, written to the store Secret (also $RAYFLEET_STORE); "
        "without it, create the Secret yourself (the README says how).")),
) -> None:
    """Write every manifest of a config as YAML, one object kind per file, ready for `kubectl apply -f DIR`."""
    if target not in TARGETS:
        err_console.print(f"[red]error[/red] --target: unknown target {target!r}; expected one of {', '.join(TARGETS)}")
        raise typer.Exit(2)
    from ..backends.kuberay.export import write_export
    from ..backends.kuberay.self_manifests import ControlService

    control = None
    if self_:
        control = ControlService(image=_required_image(image), replicas=_replicas(replicas), store_url=_postgres_url(store_url))
    elif image is not None:
        raise _fail("--image", "goes with --self (the control service's image)")
    try:
        cfg = load_config(config)
        result = write_export(cfg, out, sources=[str(p) for p in config], control=control)
    except ConfigError as e:
        for problem in e.problems:
            err_console.print(f"[red]error[/red] {problem}")
        err_console.print(f"{len(e.problems)} problem(s) found")
        raise typer.Exit(2) from None
    for rel, objs in result.files.items():
        kinds = Counter(o["kind"] for o in objs)
        console.print(f"{out / rel}: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    console.print(f"[green]ok[/green] {len(result.objects())} object(s) in {len(result.files)} file(s); see {out / 'README.md'}")
    for note in result.notes:
        console.print(f"[yellow]note[/yellow] {note}")


def _fail(field: str, problem: str) -> typer.Exit:
    err_console.print(f"[red]error[/red] {field}: {problem}")
    return typer.Exit(2)


def _required_image(image: str | None) -> str:
    if not image or any(c.isspace() for c in image):
        raise _fail("--image", "--self needs the control service's container image (e.g. us-docker.pkg.dev/PROJECT/REPO/rayfleet:0.1.0)")
    return image


def _replicas(n: int) -> int:
    if not 1 <= n <= 9:
        raise _fail("--replicas", f"must be 1 to 9, got {n}")
    return n


def _postgres_url(url: str | None) -> str | None:
    from ..server.store import is_url

    if url is not None and not is_url(url):
        raise _fail("--store-url", "must be a postgresql:// URL (the replicas share one PostgreSQL database)")
    return url
