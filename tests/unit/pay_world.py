"""A small world for *PAY call tests: the real AGIServer with the real pay flow, real
services on a temporary SQLite database seeded with the demo accounts, the sandbox gateway,
a clock the test sets, and FakeAsterisk as the caller."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ivr.agi.server import AGIServer
from ivr.app import flow_context
from ivr.config import CallConfig, Config, PaymentsConfig
from ivr.flows import routes
from ivr.flows.context import FlowContext
from ivr.gateways.sandbox import SandboxGateway
from ivr.qa.fake_asterisk import Command, FakeAsterisk, sounds_of
from ivr.services.demo import seed_demo
from ivr.storage.calls import Callback, CallRecord
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade
from ivr.storage.models import Account, Payment, PaymentMethod, PhoneNumber

# A Wednesday: 10:00 in New York (open) and 23:00 (closed); hours are the default table.
OPEN = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
CLOSED = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)

ALEX = "+15551234567"  # 100001, $84.17, Visa 4242, ZIP 10001
SAM = "+15551234568"  # 100002 and 100003 on one number
JORDAN = "+15551234569"  # 100004, no card
CASEY = "+15551234570"  # 100005, expired card
MORGAN = "+15551234571"  # 100006, zero balance
TAYLOR = "+15551234572"  # 100007, past due
MARIA = "+15551234573"  # 100008, Spanish
RILEY = "+15551234574"  # 100009, declined (insufficient funds)
STRANGER = "+15557654321"  # on no account


@dataclass
class World:
    db: Database
    gateway: SandboxGateway
    ctx: FlowContext
    server: AGIServer
    now: datetime = OPEN
    agents: bool = True
    calls: list[FakeAsterisk] = field(default_factory=list)

    def clock(self) -> datetime:
        return self.now

    async def call(self, *steps: tuple[str, str], keys: str = "", callerid: str = ALEX,
                   attest: str = "A", **kw: Any) -> FakeAsterisk:
        """One call. ``steps`` are (prompt id, keys): when that prompt starts playing, the
        caller presses those keys (so they may interrupt it); steps are taken in order.
        ``keys`` are pressed at once, before any prompt."""
        fake = FakeAsterisk(self.server.port, script="pay", callerid=callerid,
                            args=[attest] if attest else [], keys=keys,
                            on_sound=_caller(steps), **kw)
        await fake.run(max_seconds=10)
        self.calls.append(fake)
        return fake

    async def records(self) -> list[CallRecord]:
        async with self.db.session() as s:
            return list((await s.execute(select(CallRecord).order_by(CallRecord.id))
                         ).scalars())

    async def last_record(self) -> CallRecord:
        return (await self.records())[-1]

    async def payments(self) -> list[Payment]:
        async with self.db.session() as s:
            return list((await s.execute(select(Payment).order_by(Payment.id))).scalars())

    async def callbacks(self) -> list[Callback]:
        async with self.db.session() as s:
            return list((await s.execute(select(Callback))).scalars())

    async def balance(self, number: str) -> int:
        async with self.db.session() as s:
            return (await s.execute(select(Account.balance_minor).where(
                Account.account_number == number))).scalar_one()

    async def add_account(self, number: str, phone: str, token: str, *,
                          balance: int = 5000) -> None:
        async with self.db.write_session() as s:
            acct = Account(account_number=number, name="Test", zip_code="12345",
                           balance_minor=balance, currency="USD")
            pn = PhoneNumber(e164=phone)
            acct.phones.append(pn)
            s.add(acct)
            await s.flush()
            s.add(PaymentMethod(account_id=acct.id, token=token, brand="visa", last4="1111",
                                exp_month=12, exp_year=date.today().year + 2))


_TEMPLATE: list[Path] = []


async def _template() -> Path:
    """The migrated, demo-seeded database, built once per test run (PIN hashing is slow on
    purpose) and copied for each world."""
    if not _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="starpay-pay-")) / "template.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db.engine)
        await seed_demo(db)
        await db.dispose()  # last connection closed: the WAL is folded into the file
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def _copy(template: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(template, folder / "starpay.db"))


@asynccontextmanager
async def make_world(tmp_path: Path, *, verify: str = "attested", verify_with: str = "zip",
                     max_tries: int = 3,
                     allow_overpay: bool = False, db_kw: dict[str, Any] | None = None
                     ) -> AsyncIterator[World]:
    path = _copy(await _template(), tmp_path)
    db = Database(f"sqlite+aiosqlite:///{path}", **(db_kw or {}))
    gateway = SandboxGateway(tmp_path / "sandbox.db")
    holder: list[World] = []

    async def agents() -> bool:
        return holder[0].agents

    def clock() -> datetime:
        return holder[0].now

    cfg = Config(call=CallConfig(verify=verify, verify_with=verify_with, max_tries=max_tries),
                 payments=PaymentsConfig(allow_overpay=allow_overpay))
    ctx = flow_context(cfg, db=db, gateway=gateway, agents_available=agents, clock=clock,
                       first_key_ms=500, next_key_ms=300)
    server = AGIServer(routes(ctx), host="127.0.0.1", port=0)
    await server.start()
    world = World(db=db, gateway=gateway, ctx=ctx, server=server)
    holder.append(world)
    try:
        yield world
    finally:
        await server.close()
        await gateway.close()
        await db.dispose()


def _caller(steps: Sequence[tuple[str, str]]) -> Callable[[str, FakeAsterisk], None]:
    """Keys pressed as a sound starts (a piece of a Read list too), so they cut it."""
    pending = list(steps)

    def on_sound(sound: str, fake: FakeAsterisk) -> None:
        if pending and sound == f"starpay/{pending[0][0]}":
            fake.press(pending.pop(0)[1])

    return on_sound


def plays(prompt: str) -> Callable[[Command], bool]:
    """A hangup_at predicate: the command that plays ``prompt`` (alone or in a list)."""
    return lambda cmd: f"starpay/{prompt}" in sounds_of(cmd)


def played(fake: FakeAsterisk) -> list[str]:
    """Prompt ids played, in order (sound names without the starpay/ folder)."""
    return [name.removeprefix("starpay/") for name in fake.streamed]


def contains(seq: Sequence[str], part: Sequence[str]) -> bool:
    """True if ``part`` occurs in ``seq`` as a contiguous run."""
    n = len(part)
    return any(list(seq[i:i + n]) == list(part) for i in range(len(seq) - n + 1))
