"""Helpers for fault and multi-worker tests: real `ivr serve` processes, a demo-seeded
database and ledger queries that say what really happened (our rows, the processor's rows).

Everything runs on loopback; every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ivr.services.demo import seed_demo
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade
from ivr.storage.models import Account, Payment

IVR = [str(Path(sys.executable).with_name("ivr"))]
READY_TEXT = "FastAGI listening on"
_TEMPLATE: list[Path] = []


async def seeded_sqlite(folder: Path) -> str:
    """A URL for a fresh SQLite copy of the migrated, demo-seeded database (seeded once per
    run: PIN hashing is slow on purpose)."""
    if not _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="starpay-faults-")) / "template.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db.engine)
        await seed_demo(db)
        await db.dispose()  # folds the WAL into the file so a plain copy is complete
        _TEMPLATE.append(path)
    target = folder / "starpay.db"
    await asyncio.to_thread(_copy, _TEMPLATE[0], target)
    return f"sqlite+aiosqlite:///{target}"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


async def seed_url(url: str) -> None:
    """Demo accounts into an already migrated database (PostgreSQL clones)."""
    db = Database(url)
    try:
        await seed_demo(db)
    finally:
        await db.dispose()


def serve_env(asterisk: Any, *, db_url: str, ledger: Path, agi_port: int,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an `ivr serve` child talking to the test session's Asterisk."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARPAY_")}
    env.update({
        "STARPAY_DATABASE_URL": db_url,
        "STARPAY_AGI_HOST": "127.0.0.1",
        "STARPAY_AGI_PORT": str(agi_port),
        "STARPAY_AGI_SHUTDOWN_GRACE": "2",
        "STARPAY_PAYMENTS_SANDBOX_PATH": str(ledger),
        "STARPAY_PAYMENTS_RECONCILE_INTERVAL": "1",
        "STARPAY_AMI_HOST": "127.0.0.1",
        "STARPAY_AMI_PORT": str(asterisk.ami_port) if asterisk else "1",
        "STARPAY_AMI_SECRET": asterisk.ami_secret if asterisk else "unused",
        "STARPAY_AMI_RECONNECT_MAX_DELAY": "2",
    })
    env.update(extra or {})
    return env


class ServeProcess:
    """One `ivr serve` child process (or ``command``, a stand-in); its output goes to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path, cwd: Path,
                 command: Sequence[str] = (*IVR, "serve")) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> ServeProcess:
        self.cwd.mkdir(parents=True, exist_ok=True)
        start_at = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.cwd,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ivr serve exited with {self.proc.returncode}:\n"
                                     f"{self.output()[-2000:]}")
            if READY_TEXT in self.output()[start_at:]:
                return self
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"ivr serve not ready within {timeout} s:\n{self.output()[-2000:]}")

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it overruns."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode




def gateway_charges(ledger: Path) -> list[tuple[str, int, str]]:
    """(key, amount, status) of every charge the sandbox processor recorded, read straight
    from its ledger file (what the card holder would see on a statement)."""
    with sqlite3.connect(ledger) as conn:
        return list(conn.execute("SELECT idempotency_key, amount_minor, status FROM charges "
                                 "ORDER BY idempotency_key"))


async def payment_rows(url: str) -> list[Payment]:
    db = Database(url)
    try:
        async with db.session() as s:
            return list((await s.execute(select(Payment).order_by(Payment.id))).scalars())
    finally:
        await db.dispose()


async def balance(url: str, account_number: str) -> int:
    db = Database(url)
    try:
        async with db.session() as s:
            return int((await s.execute(select(Account.balance_minor).where(
                Account.account_number == account_number))).scalar_one())
    finally:
        await db.dispose()


async def audit_count(url: str, action: str) -> dict[str, int]:
    """How many audit entries of ``action`` each subject has (a double settle shows as 2)."""
    from ivr.storage.models import AuditEntry

    db = Database(url)
    try:
        async with db.session() as s:
            rows = (await s.execute(select(AuditEntry.subject, func.count()).where(
                AuditEntry.action == action).group_by(AuditEntry.subject))).all()
            return {str(subject): int(n) for subject, n in rows}
    finally:
        await db.dispose()


async def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll an async or sync predicate until truthy (its value) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)
