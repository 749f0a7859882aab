"""Console helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def estimated_start(entry: dict[str, Any]) -> str | None:
    """A waiting job's estimated start in words, from a status or a queue view's waiting entry
    (``estimatedStart``, ``estimatedStartReason``): ``TIME (reason)``, ``none: reason``, or None
    when it has no estimate yet."""
    if entry.get("estimatedStart"):
        return f"{entry['estimatedStart']} ({entry.get('estimatedStartReason', '')})"
    if entry.get("estimatedStartReason"):
        return f"none: {entry['estimatedStartReason']}"
    return None
