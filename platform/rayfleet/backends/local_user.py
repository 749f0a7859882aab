"""The unprivileged user a local cluster's Ray processes run as when rayfleet runs as root.

Every job's code runs inside a Ray worker or driver, so it can read whatever the Ray processes
can. When the control service runs as root, the local cluster is started as the system user
:data:`RAY_USER` (created with ``useradd`` if missing): its jobs cannot read the service's store,
logs or anyone's API token, which stay in root's data directory (mode 0700). The Ray side's
directories (Ray's temp dir, run directories, default checkpoints, the cluster's Ray token) live
under the cluster's temp dir and belong to that user. When rayfleet runs as an ordinary user, the
cluster runs as that same user (there is no other account to drop to).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

from ..errors import BackendError

RAY_USER = "rayfleet-ray"


def default_run_as() -> str | None:
    """:data:`RAY_USER` when this process is root, else None (run as the current user)."""
    return RAY_USER if os.geteuid() == 0 else None


def ensure_user(name: str) -> tuple[int, int]:
    """(uid, gid) of the system user ``name``, created (no home, no login shell) if missing."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", "--comment", "rayfleet local Ray cluster", name]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0 and "already exists" not in out.stderr:
            raise BackendError(f"cannot create the user {name!r} the local Ray cluster runs as: {out.stderr.strip()}") from None
        pw = pwd.getpwnam(name)
    if pw.pw_uid == 0:
        raise BackendError(f"the user {name!r} is root; the local Ray cluster must run as an unprivileged user")
    return pw.pw_uid, pw.pw_gid


def give(path: Path, uid: int, gid: int) -> None:
    """``chown -R uid:gid path`` (no symlink is followed)."""
    os.chown(path, uid, gid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def private_dir(path: Path) -> None:
    """Make ``path`` a directory only its owner can enter (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _closed_ancestor(path: str) -> str | None:
    """The first directory above ``path`` that users other than its owner cannot enter."""
    p = Path(path)
    for d in [*reversed(p.parents)]:
        try:
            mode = d.stat().st_mode
        except OSError:
            return str(d)
        if not mode & stat.S_IXOTH:
            return str(d)
    return None


def _can_run(python: str, uid: int, gid: int) -> bool:
    try:
        return subprocess.run([python, "-c", "pass"], user=uid, group=gid, extra_groups=[], cwd="/",
                              capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


def python_for(user_ids: tuple[int, int], python: str | None = None) -> str:
    """An interpreter the Ray user can run with this virtualenv's packages: ``python`` (default: this
    process's) when it can; else, when this interpreter sits under a directory closed to other users
    (pyenv in /root, mode 0700), a virtualenv of the system's CPython of the same version over this
    interpreter's own site-packages, made once in ``/tmp/rayfleet-py-<hash>`` (root's, mode 0755:
    the Ray user may run it and not change it). Returns ``python`` unchanged when no such system
    interpreter exists (:func:`check_can_run` then says why the cluster cannot start)."""
    python = python or sys.executable
    uid, gid = user_ids
    if _can_run(python, uid, gid):
        return python
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(f"/usr/bin/python{ver}")
    sites = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    if not base.exists() or not sites:
        return python
    venv = Path("/tmp") / f"rayfleet-py-{hashlib.sha1((sys.prefix + python).encode()).hexdigest()[:10]}"
    shim = venv / "bin" / "python"
    if not shim.exists():
        tmp = venv.with_name(venv.name + f".{os.getpid()}")
        (tmp / "bin").mkdir(parents=True, exist_ok=True)
        (tmp / "lib" / f"python{ver}").mkdir(parents=True, exist_ok=True)
        (tmp / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\nversion = {ver}\n")
        for name in ("python", "python3", f"python{ver}"):
            (tmp / "bin" / name).symlink_to(base)
        (tmp / "lib" / f"python{ver}" / "site-packages").symlink_to(sites[0])
        tmp.chmod(0o755)
        try:
            tmp.rename(venv)
        except OSError:  # made by another process meanwhile
            pass
    return str(shim) if _can_run(str(shim), uid, gid) else python


def check_can_run(python: str, env: dict[str, str], uid: int, gid: int, user: str) -> None:
    """Raise :class:`BackendError` unless ``user`` can run ``python`` with rayfleet and Ray importable."""
    # Cheap (nothing is imported): the packages are found, and their directories readable.
    code = ("import importlib.util as u, os\n"
            "for name in ('ray', 'rayfleet'):\n"
            "    spec = u.find_spec(name)\n"
            "    assert spec and spec.submodule_search_locations, f'{name} is not importable'\n"
            "    for d in spec.submodule_search_locations:\n"
            "        assert os.access(d, os.R_OK | os.X_OK), f'{d} is not readable'\n")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, user=uid, group=gid,
                             extra_groups=[], cwd="/", timeout=120)
        ok, why = out.returncode == 0, out.stderr.strip()[-800:]
    except OSError as e:
        ok, why = False, str(e)
    if ok:
        return
    real = os.path.realpath(python)
    closed = _closed_ancestor(real)
    hint = f" ({closed} is closed to other users)" if closed else ""
    raise BackendError(
        f"the local Ray cluster runs as the unprivileged user {user!r} (rayfleet runs as root), but {user!r} "
        f"cannot run {python} -> {real}{hint}: {why}. Install Python, the virtualenv and rayfleet's code where "
        f"that user can read them, or name one it can run in $RAYFLEET_RAY_PYTHON, or run rayfleet as an "
        f"ordinary user."
    )
