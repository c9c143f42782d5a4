"""A throwaway PostgreSQL cluster for tests and benchmarks.

initdb and postgres refuse to run as root, and CI runs as root: then the cluster is created
and run as an unprivileged user (``postgres`` if it exists, else ``nobody``) through
``runuser``, in a temp dir owned by that user. It listens on a free loopback port and keeps its
unix socket in the temp dir, so it never collides with a system PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres live: pg_config's bindir, Debian's tree, or PATH."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(p: str) -> int:
        m = re.search(r"/postgresql/(\d+)/", p)
        return int(m.group(1)) if m else 0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                           key=version, reverse=True)]
    if which := shutil.which("initdb"):
        candidates.append(Path(which).resolve().parent)
    for c in candidates:
        if all((c / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return c
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """``with TempPostgres() as pg: pg.url("db")``; everything is removed on exit."""

    def __init__(self, fsync: bool = False, user: str = "starpay") -> None:
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install "
                "them (Debian: apt-get install postgresql)")
        self.bindir = bindir
        self.fsync = fsync
        self.user = user
        self.port = 0
        self.dir: Path | None = None
        self._runas: list[str] = []

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [*self._runas, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(args[:2])} failed: "
                                      f"{(res.stderr or res.stdout).strip()[-800:]}")

    def start(self) -> TempPostgres:
        self.dir = Path(tempfile.mkdtemp(prefix="starpay-pg-"))
        if os.geteuid() == 0:
            runner = shutil.which("runuser")
            owner = _unprivileged_user()
            if runner is None or owner is None:
                raise PostgresUnavailable("running as root needs runuser and an "
                                          "unprivileged user (postgres or nobody)")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._runas = [runner, "-u", owner.pw_name, "--"]
        data, sock = self.dir / "data", self.dir
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", self.user,
                  "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
        self.port = free_port()
        opts = (f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 "
                f"-c max_connections=200 -c fsync={'on' if self.fsync else 'off'}")
        if not self.fsync:
            opts += " -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w",
                  "-t", "60", "-l", str(self.dir / "log"), "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
                      "immediate", "-w", "stop", timeout=60)
        except (PostgresUnavailable, subprocess.SubprocessError):
            pass  # already gone; the directory is removed below either way
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unprivileged_user() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None
