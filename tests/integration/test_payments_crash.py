"""A real process killed with SIGKILL after the gateway charged and before our commit:
the reconciler must settle it with exactly one charge at the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from ivr.gateways.sandbox import SandboxGateway
from ivr.services.payments import Approved, PaymentService
from ivr.services.reconcile import reconcile_once
from ivr.storage.models import Account, Payment
from tests.fixtures.paused_gateway import PAUSE_ENV
from tests.integration.test_payments_charge import make_account

ROOT = Path(__file__).resolve().parents[2]


async def test_sigkill_between_gateway_and_commit(db, tmp_path):
    aid = await make_account(db)
    ledger = tmp_path / "ledger.db"
    gw = SandboxGateway(ledger)
    env = {**os.environ, PAUSE_ENV: "60"}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.charge_child", db.url, str(ledger),
        str(aid), "crash-1", cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not gw.approved_charges():  # the gateway has charged; the child now sleeps
            if child.returncode is not None:
                raise AssertionError((await child.stderr.read()).decode())  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "child never reached the gateway"
            await asyncio.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
    assert child.returncode == -signal.SIGKILL
    async with db.session() as s:
        p = (await s.execute(select(Payment))).scalar_one()
        assert p.state == "pending"
        assert (await s.get(Account, aid)).balance_minor == 8417  # type: ignore[union-attr]

    report = await reconcile_once(db, gw, min_age=timedelta(0))
    assert report.approved == 1
    assert gw.approved_charges() == {"crash-1": 1000}
    async with db.session() as s:
        assert (await s.execute(select(Payment.state))).scalar_one() == "approved"
        assert (await s.get(Account, aid)).balance_minor == 7417  # type: ignore[union-attr]
    # The caller's retry with the same key gets the settled payment, not a new charge.
    again = await PaymentService(db, gw).charge(aid, 1000, "ivr", "crash-1", "call-crash")
    assert isinstance(again, Approved)
    assert gw.approved_charges() == {"crash-1": 1000}
    await gw.close()
