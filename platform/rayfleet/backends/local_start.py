"""Start several Ray nodes of a local cluster with one Python process:
``python -m rayfleet.backends.local_start SPEC.json``.

Each node is started by Ray's own ``ray start`` command (``ray.scripts.scripts.start``, the click
command behind the CLI) with exactly the arguments the CLI would get, one after the other, in this
one process. Importing Ray costs seconds of CPU; paying it once instead of once per simulated host
is what makes bringing up 7 hosts tolerable on a 2-core machine. Like ``ray start`` without
``--block``, the nodes' processes outlive this helper.

SPEC.json: ``{"nodes": [{"name": str, "args": [str, ...]}, ...], "raylet_wrapper_dir": str}``. Prints one line per node,
``RESULT_PREFIX`` + JSON ``{"name", "ok", "error", "seconds"}``, and stops at the first node
that fails.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

RESULT_PREFIX = "rayfleet-node-result: "


# Ray 2.60's Python starts the raylet without ``--dashboard_agent_listen_port`` although the raylet
# has that flag, so every raylet blocks until its dashboard agent writes a port file, and aborts
# (``Check failed`` in ``NodeManager::WaitForDashboardAgentPorts``) after a fixed 15 s. On a loaded
# 2-core machine the agent's imports alone take longer. rayfleet always fixes the agent's listen
# port (``--dashboard-agent-listen-port``), so the raylet is started through this wrapper, which
# passes the same port to the raylet; the raylet then has all three agent ports up front and
# starts without waiting, as it does for the two ports Ray's Python already passes.
_RAYLET_WRAPPER = """#!/bin/sh
# rayfleet: exec the real raylet with the dashboard agent's listen port (see local_start.py).
port=""
for arg in "$@"; do
  case "$arg" in
    --dashboard_agent_command=*)
      port=$(printf '%s' "$arg" | sed -n 's/.*--listen-port=\\([0-9][0-9]*\\).*/\\1/p') ;;
  esac
done
if [ -n "$port" ] && [ "$port" != "0" ]; then
  exec "{raylet}" "$@" "--dashboard_agent_listen_port=$port"
fi
exec "{raylet}" "$@"
"""


def install_raylet_wrapper(directory: str) -> str:
    """Write the raylet wrapper into ``directory`` and make Ray start raylets through it."""
    import os

    import ray._private.services as services

    real = services.RAYLET_EXECUTABLE
    path = os.path.join(directory, "raylet")
    with open(path + ".tmp", "w") as f:
        f.write(_RAYLET_WRAPPER.replace("{raylet}", real))
    os.chmod(path + ".tmp", 0o755)
    os.replace(path + ".tmp", path)
    services.RAYLET_EXECUTABLE = path
    return path


def start_nodes(nodes: list[dict], wrapper_dir: str | None = None) -> int:
    from ray.scripts.scripts import start

    if wrapper_dir:
        install_raylet_wrapper(wrapper_dir)

    for node in nodes:
        t0 = time.monotonic()
        error = None
        try:
            start.main(args=list(node["args"]), prog_name="ray start", standalone_mode=False)
        except SystemExit as e:
            if e.code not in (0, None):
                error = f"ray start exited with {e.code}"
        except BaseException as e:
            error = "".join(traceback.format_exception(e))[-3000:]
        sys.stderr.flush()
        print(RESULT_PREFIX + json.dumps({"name": node["name"], "ok": error is None, "error": error, "seconds": round(time.monotonic() - t0, 2)}), flush=True)
        if error is not None:
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m rayfleet.backends.local_start SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        spec = json.load(f)
    return start_nodes(spec["nodes"], spec.get("raylet_wrapper_dir"))


if __name__ == "__main__":
    sys.exit(main())
