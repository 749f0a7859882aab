"""Finding and ending the processes of one local Ray cluster, from /proc (Linux).

A local cluster is identified by a marker, its private Ray temp dir. The backend starts every
``ray start`` with ``RAYFLEET_LOCAL_CLUSTER=<marker>`` in the environment, which every process
Ray spawns inherits (GCS, raylets, dashboard, client server, agents, workers, job drivers). A
process belongs to the cluster if its environment carries the marker, or its command line names
the temp dir, or it descends from such a process, or it carries ``RAY_RAYLET_PID`` of one of the
cluster's raylets (a worker orphaned by its raylet's death). Nothing else on the machine is ever
matched: other users' and other engineers' Ray clusters use other temp dirs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    cmdline: str


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def proc_info(pid: int) -> ProcInfo | None:
    """The process ``pid`` (None if it is gone or a zombie)."""
    stat = _read(_PROC / str(pid) / "stat")
    if stat is None:
        return None
    # "pid (comm) state ppid ..." - comm may hold spaces and parentheses.
    rest = stat[stat.rfind(b")") + 2:].split()
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    cmd = _read(_PROC / str(pid) / "cmdline") or b""
    return ProcInfo(pid=pid, ppid=int(rest[1]), cmdline=cmd.replace(b"\0", b" ").decode(errors="replace").strip())


def all_procs() -> dict[int, ProcInfo]:
    out: dict[int, ProcInfo] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None:
                out[info.pid] = info
    return out


def pid_alive(pid: int | None, must_contain: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, if given, its command line holds ``must_contain``."""
    if not pid:
        return False
    info = proc_info(pid)
    if info is None:
        return False
    return must_contain is None or must_contain in info.cmdline


def descendants(roots: Iterable[int], procs: dict[int, ProcInfo] | None = None) -> set[int]:
    """``roots`` and every process below them."""
    procs = all_procs() if procs is None else procs
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out: set[int] = set()
    stack = [r for r in roots if r in procs]
    while stack:
        pid = stack.pop()
        if pid in out:
            continue
        out.add(pid)
        stack.extend(children.get(pid, ()))
    return out


ENV_MARKER = "RAYFLEET_LOCAL_CLUSTER"


def _environ(pid: int) -> dict[bytes, bytes]:
    env = _read(_PROC / str(pid) / "environ")
    if not env:
        return {}
    out = {}
    for item in env.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key] = value
    return out


def _raylet_pid_of(env: dict[bytes, bytes]) -> int | None:
    try:
        return int(env[b"RAY_RAYLET_PID"])
    except (KeyError, ValueError):
        return None


def cluster_pids(marker: str, raylet_pids: Iterable[int] = ()) -> set[int]:
    """Every live process of the cluster whose temp dir is ``marker``.

    ``raylet_pids``: raylets the cluster ever had (including dead ones), to catch orphaned workers.
    """
    procs = all_procs()
    me = os.getpid()
    mark = marker.encode()
    roots = [p.pid for p in procs.values() if marker in p.cmdline]
    found = descendants(roots, procs)
    known_raylets = set(raylet_pids) | {p for p in roots if procs[p].cmdline.split(" ", 1)[0].endswith("/raylet")}
    for p in procs.values():
        if p.pid in found or p.pid == me:
            continue
        env = _environ(p.pid)
        if env.get(ENV_MARKER.encode()) == mark or (p.cmdline.startswith("ray::") and _raylet_pid_of(env) in known_raylets):
            found |= descendants([p.pid], procs)
    found.discard(me)
    return found


def kill_pids(pids: Iterable[int], *, grace_s: float = 5.0) -> set[int]:
    """SIGTERM ``pids``, wait up to ``grace_s``, SIGKILL survivors. Returns pids still alive after."""
    pids = {p for p in pids if p != os.getpid()}
    if grace_s > 0:
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(proc_info(p) for p in pids):
            time.sleep(0.1)
    for pid in pids:
        if proc_info(pid) is not None:
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(proc_info(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if proc_info(p) is not None}


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _socket_inodes(pids: Iterable[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pid in pids:
        fd_dir = _PROC / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                out[link[8:-1]] = pid
    return out


def _hex_ip(text: str) -> str:
    """An address of /proc/net/tcp{,6} (hex, in host byte order per 32-bit word) as text."""
    import ipaddress

    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def listening_sockets(pids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state that one of ``pids`` holds."""
    inodes = _socket_inodes(pids)
    out = []
    for table in ("tcp", "tcp6"):
        text = _read(_PROC / "net" / table)
        for line in (text or b"").decode().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A" or fields[9] not in inodes:
                continue
            addr, _, port = fields[1].partition(":")
            out.append((inodes[fields[9]], _hex_ip(addr), int(port, 16)))
    return sorted(out)


def is_loopback(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address).is_loopback
