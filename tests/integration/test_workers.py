"""Two `ivr serve` workers on one PostgreSQL and one Asterisk: every job is done once.

- calls: FakeAsterisk full paying calls split over both workers' ports, and real calls that
  the dialplan spreads (STARPAY_AGI_TARGETS lists both workers; one is picked per call);
- the reconciler: processor-timed-out (``unknown``) payments, each settled by one worker;
- the callback scheduler: due callbacks, each placed once through the real Asterisk.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ivr.asterisk.local import free_port
from ivr.gateways.sandbox import SandboxGateway
from ivr.qa.asterisk_call import AsteriskCall, qa_ami
from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.services.callbacks import CallbackStore
from ivr.services.payments import PaymentService, Pending
from ivr.storage.calls import Callback
from ivr.storage.db import Database
from ivr.storage.models import Account, PaymentMethod, PhoneNumber
from tests.faults.serve_proc import (
    ServeProcess,
    audit_count,
    gateway_charges,
    payment_rows,
    serve_env,
    wait_until,
)
from tests.fixtures.postgres import _TEMPLATE, _clone

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

PAYERS = [(f"+1555000510{i}", f"51000{i}") for i in range(8)]  # FakeAsterisk calls
UNKNOWN = [(f"+155500052{i:02d}", f"5200{i:02d}") for i in range(20)]  # reconciler jobs
CALLBACKS = [f"+155500053{i:02d}" for i in range(8)]  # scheduler jobs
REAL_CALLS = 16  # short real calls: all on one worker by chance is 2 in 65536
ALL_WEEK = ";".join(f"{d}=00:00-24:00" for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                  "sun"))
_REPORT = re.compile(r"reconcile: ReconcileReport\(checked=(\d+), approved=(\d+)")


async def _accounts(db: Database, rows: list[tuple[str, str]], token: str) -> list[int]:
    ids = []
    async with db.write_session() as s:
        for phone, number in rows:
            acct = Account(account_number=number, name="Worker test", zip_code="12345",
                           balance_minor=1000, currency="USD")
            acct.phones.append(PhoneNumber(e164=phone))
            s.add(acct)
            await s.flush()
            s.add(PaymentMethod(account_id=acct.id, token=token, brand="visa", last4="1111",
                                exp_month=12, exp_year=datetime.now(UTC).year + 2))
            ids.append(acct.id)
    return ids


def _pay(steps: list[tuple[str, str]]) -> Callable[[str, FakeAsterisk], None]:
    """Presses each step's keys as its prompt starts (a piece of a Read list too)."""
    def on_sound(sound: str, fake: FakeAsterisk) -> None:
        if steps and sound == f"starpay/{steps[0][0]}":
            fake.press(steps.pop(0)[1])
    return on_sound


async def _short_real_call(ami: Any, n: int) -> str:
    call = AsteriskCall(ami, caller_id=f"+1555000540{n:02d}")
    try:
        await call.start()
        await call.wait_for(r"starpay/greeting", timeout=20)
        return call.service_uid
    finally:
        await call.close()


async def test_two_workers_share_calls_and_jobs_once_each(asterisk: Any, postgres_cluster: Any,
                                                         tmp_path: Path) -> None:
    url = await _clone(postgres_cluster, _TEMPLATE)
    ledger = tmp_path / "ledger.db"
    db = Database(url)
    gateway = SandboxGateway(ledger)
    try:
        await _accounts(db, PAYERS, "tok_sandbox_approve")
        # Reconciler jobs: charged at the processor, but we never heard back.
        pay = PaymentService(db, gateway)
        for aid in await _accounts(db, UNKNOWN, "tok_sandbox_timeout_after_charge"):
            assert isinstance(await pay.charge(aid, 1000, "ivr", f"job-{aid}", None), Pending)
        # Scheduler jobs: callbacks already due.
        store = CallbackStore(db)
        for number in CALLBACKS:
            await store.schedule(number, datetime.now(UTC) - timedelta(minutes=1))
    finally:
        await gateway.close()

    ports = [free_port(), free_port()]
    workers = [ServeProcess(serve_env(asterisk, db_url=url, ledger=ledger, agi_port=port,
                                      extra={"STARPAY_HOURS_WEEKLY": ALL_WEEK,
                                             "STARPAY_HOURS_HOLIDAYS_COUNTRY": ""}),
                            tmp_path / f"worker{i}.log", tmp_path / f"w{i}")
               for i, port in enumerate(ports)]
    ami = await qa_ami(asterisk)
    originated: Counter[str] = Counter()

    def on_new(event: Any) -> None:
        m = re.match(r"Local/(\+\d+)@starpay-callback-[0-9a-f]+;1$", event.get("Channel", ""))
        if m:
            originated[m.group(1)] += 1

    ami.on("Newchannel", on_new)
    asterisk.agi_targets = [f"127.0.0.1:{p}" for p in ports]
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start) for w in workers))
        await asyncio.to_thread(asterisk.write_settings)

        # Calls: FakeAsterisk full payments alternating between the workers, all at once.
        fakes = [FakeAsterisk(ports[i % 2], callerid=phone, args=["A"],
                              on_sound=_pay([("main_menu", "1"), ("pay_confirm_press", "1")]))
                 for i, (phone, _) in enumerate(PAYERS)]
        await asyncio.gather(*(f.run(max_seconds=20) for f in fakes))
        assert all("starpay/approved" in f.streamed for f in fakes)
        # Real calls: the dialplan picks a worker for each.
        uids = await asyncio.gather(*(_short_real_call(ami, n) for n in range(REAL_CALLS)))

        await wait_until(lambda: _all_settled(url), 30, "every unknown payment settled")
        await wait_until(lambda: _all_placed(db), 30, "every callback placed")
        await asyncio.sleep(1.5)  # a further reconcile pass on each worker: must find nothing
    finally:
        asterisk.agi_targets = []
        await asyncio.to_thread(asterisk.write_settings)
        ami.off("Newchannel", on_new)
        await ami.close()
        for w in workers:
            await asyncio.to_thread(w.stop)
        await asyncio.to_thread(asterisk.cli, "channel request hangup all")
        await db.dispose()

    logs = [w.output() for w in workers]
    # Real calls: each served by exactly one worker, and both workers got some.
    served = [sum(uid in log for uid in uids) for log in logs]
    assert sum(served) == REAL_CALLS and all(served), served
    # Payments: one charge per paying call and per timed-out job; never a second one.
    payments = await payment_rows(url)
    assert len(payments) == len(PAYERS) + len(UNKNOWN)
    assert {p.state for p in payments} == {"approved"}
    charges = gateway_charges(ledger)
    assert len(charges) == len(payments) and all(c[2] == "approved" for c in charges)
    approved = await audit_count(url, "payment.approved")
    assert set(approved.values()) == {1} and len(approved) == len(payments)
    # The reconcilers between them settled each unknown payment once (no double work).
    done = [[(int(c), int(a)) for c, a in _REPORT.findall(log)] for log in logs]
    assert sum(a for runs in done for _, a in runs) == len(UNKNOWN), done
    assert sum(c for runs in done for c, _ in runs) == len(UNKNOWN), done
    # Callbacks: each claimed once, placed once (one originated call per number).
    db = Database(url)
    try:
        async with db.session() as s:
            rows = list((await s.execute(select(Callback))).scalars())
    finally:
        await db.dispose()
    assert {(r.status, r.attempts) for r in rows} == {("placed", 1)}
    assert originated == Counter({n: 1 for n in CALLBACKS}), originated
    placed_by = [len(re.findall(r"callback \d+ placed", log)) for log in logs]
    assert sum(placed_by) == len(CALLBACKS)
    print(f"real calls per worker {served}; reconciled per worker "
          f"{[sum(a for _, a in runs) for runs in done]}; callbacks per worker {placed_by}")


async def _all_settled(url: str) -> bool:
    return all(p.state == "approved" for p in await payment_rows(url))


async def _all_placed(db: Database) -> bool:
    async with db.session() as s:
        states = list((await s.execute(select(Callback.status))).scalars())
    return bool(states) and all(st == "placed" for st in states)
