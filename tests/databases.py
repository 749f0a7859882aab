"""The databases the store's tests run on: a real PostgreSQL server, and :func:`connect`, a
connection of their own to a store's database (SQLite file or PostgreSQL URL) beside the store's.

The server:  Debian's ``postgresql`` package, a cluster made
with ``initdb`` in a temporary directory, listening on 127.0.0.1 at a free port, stopped (and its
directory removed) at the end of the session. ``make venv`` installs the package when it is missing.

Each test gets a database of its own (:meth:`PostgresServer.new_database`), so tests never see each
other's rows. As root (CI's containers), the server runs as the ``postgres`` user, since PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from service_process import free_port

from rayfleet.server.store import is_url


def server_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server here: `make venv` installs Debian's postgresql package "
                           "(apt-get install postgresql)")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self) -> None:
        self.bin = server_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="rayfleet-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:   # PostgreSQL will not run as root
            shutil.chown(self.dir, "postgres")
            self.dir.chmod(0o700)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "-t", "60", "start")

    def stop(self, *, mode: str = "fast") -> None:
        """``mode``: fast (clean shutdown) or immediate (as a crash: no checkpoint, recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop the server (SIGQUIT: PostgreSQL's immediate shutdown; a signal, not a pg_ctl
        process, since this runs in whichever test's teardown ends the session) and remove it."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGQUIT)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def connect(target: str | Path):
    """A connection to the store's database outside the store, autocommit, taking the store's SQL
    (``?`` placeholders): ``execute(sql, args)`` gives a cursor with ``fetchone``/``fetchall``."""
    if is_url(target):
        from rayfleet.server.store_postgres import Connection

        return Connection(str(target))
    import sqlite3

    return sqlite3.connect(str(target), isolation_level=None)
