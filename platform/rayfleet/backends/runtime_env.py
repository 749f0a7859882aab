"""The packages a Ray runtime_env names: the one walk of ``working_dir`` and ``py_modules``.

A package is a ``gcs://`` URI (what ``ray job submit --working-dir`` / ``--py-modules`` upload);
other entries (``s3://``, ``https://``, local paths, module objects) are Ray's to fetch and are
not packages. The control service checks and hands over packages by these fields; the KubeRay
backend mounts them; both read them here.
"""

from __future__ import annotations

import copy
from typing import Any

PACKAGE_SCHEME = "gcs://"


def package_uris(runtime_env: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``(field, uri)`` of every package a runtime_env names, in order: ``working_dir`` then
    ``py_modules[i]`` (the field is the runtime_env's own key path, e.g. ``py_modules[1]``)."""
    env = runtime_env or {}
    out: list[tuple[str, str]] = []
    wd = env.get("working_dir")
    if isinstance(wd, str) and wd.startswith(PACKAGE_SCHEME):
        out.append(("working_dir", wd))
    modules = env.get("py_modules")
    if isinstance(modules, list):
        out += [(f"py_modules[{i}]", m) for i, m in enumerate(modules) if isinstance(m, str) and m.startswith(PACKAGE_SCHEME)]
    return out


def with_package_uris(runtime_env: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """A copy of ``runtime_env`` whose package URIs are replaced through ``mapping`` (URIs not in
    it are kept)."""
    env = copy.deepcopy(runtime_env)
    for field, uri in package_uris(env):
        if uri not in mapping:
            continue
        if field == "working_dir":
            env["working_dir"] = mapping[uri]
        else:
            env["py_modules"][int(field[len("py_modules["):-1])] = mapping[uri]
    return env
