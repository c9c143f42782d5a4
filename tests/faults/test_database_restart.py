"""PostgreSQL goes down while a charge is in flight, and comes back.

The pending payment (with its idempotency key) is committed, then the database dies while
the processor charges the card. The service cannot record the outcome: the call must end in
AGISTATUS=FAILURE (the dialplan's spoken fallback, never silence), and once the database is
back the reconciler settles the payment with exactly one charge at the processor. A call
after the restart pays normally (the pool reconnects by itself).

The cluster is this test's own (fsync on, stopped with ``-m immediate``: a crash, not a
polite shutdown), so the session's shared PostgreSQL is never disturbed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.agi.server import AGIServer
from ivr.app import flow_context
from ivr.config import Config
from ivr.flows import routes
from ivr.gateways.sandbox import SandboxGateway
from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.services.reconcile import reconcile_once
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade
from ivr.storage.pgtemp import PostgresUnavailable, TempPostgres
from tests.faults.serve_proc import (
    audit_count,
    balance,
    gateway_charges,
    payment_rows,
    seed_url,
    wait_until,
)

pytestmark = pytest.mark.postgres

OPEN = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in New York
ALEX = "+15551234567"  # 100001, $84.17
TAYLOR = "+15551234572"  # 100007, $150.25
STEPS = (("main_menu", "1"), ("pay_confirm_press", "1"))
GATEWAY_LATENCY = 2.0  # the window in which the database is taken down


def _pg_ctl(pg: TempPostgres, *args: str) -> None:
    assert pg.dir is not None
    pg._run(str(pg.bindir / "pg_ctl"), "-D", str(pg.dir / "data"), *args)


def crash(pg: TempPostgres) -> None:
    _pg_ctl(pg, "-m", "immediate", "-w", "stop")


def start_again(pg: TempPostgres) -> None:
    assert pg.dir is not None
    _pg_ctl(pg, "-o", f"-p {pg.port} -k {pg.dir} -c listen_addresses=127.0.0.1", "-w",
            "-t", "60", "-l", str(pg.dir / "log"), "start")


@pytest.fixture
async def cluster() -> AsyncIterator[TempPostgres]:
    from tests.conftest import missing_real_part

    try:
        pg = await asyncio.to_thread(TempPostgres(fsync=True).start)
    except PostgresUnavailable as exc:
        missing_real_part("PostgreSQL", str(exc))
        raise
    try:
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)


def caller(steps: Sequence[tuple[str, str]]) -> Callable[[str, FakeAsterisk], None]:
    """Presses each step's keys as its prompt starts (a piece of a Read list too)."""
    pending = list(steps)

    def on_sound(sound: str, fake: FakeAsterisk) -> None:
        if pending and sound == f"starpay/{pending[0][0]}":
            fake.press(pending.pop(0)[1])

    return on_sound


async def test_database_crash_mid_charge_falls_back_and_settles_once(
        cluster: TempPostgres, tmp_path: Path) -> None:
    url = cluster.url("postgres")
    db = Database(url)
    await upgrade(db.engine)
    await seed_url(url)
    ledger = tmp_path / "ledger.db"
    gateway = SandboxGateway(ledger, latency=GATEWAY_LATENCY)
    ctx = flow_context(Config(), db=db, gateway=gateway, agents_available=_no_agents,
                       clock=lambda: OPEN, first_key_ms=500, next_key_ms=300)
    server = AGIServer(routes(ctx), host="127.0.0.1", port=0)
    await server.start()
    try:
        fake = FakeAsterisk(server.port, callerid=ALEX, args=["A"], on_sound=caller(STEPS))
        call = asyncio.ensure_future(fake.run(max_seconds=30))
        # The pending row is committed; the processor is now working on the charge.
        (pending,) = await wait_until(lambda: payment_rows(url), 15, "the pending payment")
        assert pending.state == "pending"
        down_at = time.monotonic()
        await asyncio.to_thread(crash, cluster)
        await asyncio.wait_for(call, 30)
        ended_s = time.monotonic() - down_at
        # The service could not record the outcome: FAILURE → the dialplan's spoken fallback.
        assert fake.agi_status == "FAILURE"
        # ...but the processor did charge (the card holder's side of the story).
        assert gateway_charges(ledger) == [(pending.idempotency_key, 8417, "approved")]

        await asyncio.to_thread(start_again, cluster)
        up_at = time.monotonic()
        report = await wait_until(
            lambda: _reconcile(db, gateway), 20, "a reconcile pass once the database is back")
        settled_s = time.monotonic() - up_at
        assert report.approved == 1
        (settled,) = await payment_rows(url)
        assert (settled.id, settled.state) == (pending.id, "approved")
        assert await balance(url, "100001") == 0
        assert await audit_count(url, "payment.approved") == {f"payment:{settled.id}": 1}
        # Reconciling again changes nothing; the processor still holds one charge.
        assert (await reconcile_once(db, gateway, min_age=timedelta(0))).checked == 0
        assert len(gateway_charges(ledger)) == 1

        # After the restart a new caller pays normally, on the same (reconnected) pool.
        after = FakeAsterisk(server.port, callerid=TAYLOR, args=["A"], on_sound=caller(STEPS))
        await after.run(max_seconds=30)
        assert "starpay/approved" in after.streamed
        assert await balance(url, "100007") == 0
        assert len(gateway_charges(ledger)) == 2
    finally:
        await server.close()
        await gateway.close()
        await db.dispose()
    print(f"database down mid-charge: call ended with FAILURE {ended_s:.2f} s later; "
          f"settled {settled_s:.2f} s after the database was back")


async def _no_agents() -> bool:
    return False


async def _reconcile(db: Database, gateway: SandboxGateway) -> object:
    try:
        report = await reconcile_once(db, gateway, min_age=timedelta(0))
    except Exception:  # the pool's first use after the restart may still fail once
        return None
    return report if report.checked else None
