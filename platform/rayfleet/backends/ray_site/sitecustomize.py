"""Loaded at start-up by every Python process of a local rayfleet cluster (this directory is on
their ``PYTHONPATH``; see ``LocalBackend._process_env``): ``ray start``, GCS-side Python helpers,
dashboard and its agents, workers, job drivers and the programs they run.

Ray 2.60 replaces a loopback address with the machine's routable IP wherever it resolves one
(``ray._private.services.resolve_ip_for_localhost``: ``ray start --node-ip-address`` and
``--address``, and the bootstrap address of every ``ray.init``). Its servers bind 127.0.0.1 only
when their node IP *is* 127.0.0.1, so rayfleet's local cluster runs with node IP 127.0.0.1, and
this hook keeps every process of the cluster from trading 127.0.0.1 for an address the cluster
does not listen on. Nothing else is changed; outside a local cluster (no
``RAYFLEET_LOCAL_CLUSTER`` in the environment) this module does nothing.
"""

from __future__ import annotations

import importlib.abc
import os
import sys

_TARGET = "ray._private.services"
_LOOPBACK = ("127.0.0.1", "localhost")


def keep_loopback(services) -> None:
    """Make ``services.resolve_ip_for_localhost`` leave a loopback host as it is."""
    original = services.resolve_ip_for_localhost
    if getattr(original, "_rayfleet_loopback", False):
        return

    def resolve_ip_for_localhost(host: str) -> str:
        return host if host in _LOOPBACK else original(host)

    resolve_ip_for_localhost._rayfleet_loopback = True  # type: ignore[attr-defined]
    services.resolve_ip_for_localhost = resolve_ip_for_localhost


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ``ray._private.services`` right after it is first executed."""

    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            keep_loopback(module)

        loader.exec_module = exec_module
        return spec


if os.environ.get("RAYFLEET_LOCAL_CLUSTER"):
    if _TARGET in sys.modules:
        keep_loopback(sys.modules[_TARGET])
    else:
        sys.meta_path.insert(0, _PatchOnImport())
