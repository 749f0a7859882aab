"""How a running training learns it should save a checkpoint now.

Two sources set the same flag, which a train loop reads at each step boundary with
:func:`checkpoint_requested` and clears with :func:`consume` once it has saved:

- **a request file**: the backend's ``request_checkpoint(run_id)`` (a spot reclaim notice, a DWS host
  nearing its end, a calendar window closing, a move back to a preferred flavor) writes a numbered
  request into the run's directory; every process of the run finds its path in
  ``$RAYFLEET_CHECKPOINT_REQUEST`` (:data:`rayfleet.backends.rundir.CHECKPOINT_REQUEST_ENV`). A request
  counts once: after :func:`consume` only a newer one sets the flag again.
- **SIGTERM**: GKE delivers a spot reclaim (and a node drain) to a pod as SIGTERM followed by a
  grace period. :func:`install_sigterm_handler` makes SIGTERM set the flag instead of ending the
  process at once, so the loop can checkpoint inside the grace period. Python only lets the main
  thread install a handler: an entry-point program (``ray job submit -- python train.py``) can; Ray
  Train runs a worker's loop in another thread, so there the request file is the channel.

In a data-parallel gang every worker must decide the same way at the same step (a checkpoint report
is a collective call): ``train_apps.common.checkpoint_asked`` all-reduces the flag over the group.
See docs/train.md, "Honouring a checkpoint notice".
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from ..backends.rundir import CHECKPOINT_REQUEST_ENV, checkpoint_request_seq

_lock = threading.Lock()
_sigterm = False
_seen: dict[str, int] = {}   # request file -> the newest request number already honoured


def request_file() -> Path | None:
    """The run's checkpoint-request file ($RAYFLEET_CHECKPOINT_REQUEST); None outside a rayfleet run."""
    path = os.environ.get(CHECKPOINT_REQUEST_ENV)
    return Path(path) if path else None


def _request_seq(path: Path | None) -> int:
    if path is None:
        return 0
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    return checkpoint_request_seq(data)


def checkpoint_requested() -> bool:
    """Whether a checkpoint was asked for (a new request, or SIGTERM) and not yet :func:`consume`\\ d."""
    path = request_file()
    with _lock:
        return _sigterm or _request_seq(path) > _seen.get(str(path), 0)


def consume() -> None:
    """The checkpoint asked for is saved: clear the flag (requests up to the newest one seen)."""
    global _sigterm
    path = request_file()
    with _lock:
        _sigterm = False
        _seen[str(path)] = max(_seen.get(str(path), 0), _request_seq(path))


def reset() -> None:
    """Forget every request seen and any SIGTERM (a new run in the same process; tests)."""
    global _sigterm
    with _lock:
        _sigterm = False
        _seen.clear()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _sigterm
    _sigterm = True


def install_sigterm_handler() -> bool:
    """Make SIGTERM ask for a checkpoint (instead of ending the process); True if installed.

    Only the main thread can install a signal handler: elsewhere (a Ray Train worker's loop) this
    returns False and the request file is the only channel."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True
