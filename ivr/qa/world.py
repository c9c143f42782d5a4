"""The world of one scenario: its own SQLite database (a copy of one migrated, seeded
template), its own sandbox gateway and a clock starting at its ``at``, so scenarios run in
parallel without seeing each other's payments or lockouts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from pathlib import Path

from sqlalchemy import select

from ivr.app import flow_context
from ivr.app_hours import business_hours
from ivr.config import Config
from ivr.flows.context import FlowContext
from ivr.gateways.sandbox import SandboxGateway
from ivr.qa.scenario import Scenario
from ivr.services.demo import seed_demo
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade
from ivr.storage.models import Account, PaymentMethod, PhoneNumber, Statement

Agents = Callable[[], Awaitable[bool]]
Clock = Callable[[], dt.datetime]


class Templates:
    """Migrated databases (demo-seeded or empty) built once per run and copied per scenario:
    seeding hashes PINs, which is slow on purpose."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: dict[str, Path] = {}
        self._lock = asyncio.Lock()

    async def get(self, seed: str) -> Path:
        async with self._lock:
            if seed not in self._built:
                path = self.folder / f"template-{seed}.db"
                db = Database(f"sqlite+aiosqlite:///{path}")
                await upgrade(db.engine)
                if seed == "demo":
                    await seed_demo(db)
                await db.dispose()  # the last connection folds the WAL into the file
                self._built[seed] = path
            return self._built[seed]


@dataclass
class World:
    scenario: Scenario
    db: Database
    gateway: SandboxGateway
    ctx: FlowContext

    async def close(self) -> None:
        await self.gateway.close()
        await self.db.dispose()


@contextlib.asynccontextmanager
async def make_world(scenario: Scenario, templates: Templates, folder: Path,
                     agents: Agents, cfg: Config, *,
                     first_key_ms: int, next_key_ms: int) -> AsyncIterator[World]:
    path = folder / "starpay.db"
    template = await templates.get(scenario.seed)
    await asyncio.to_thread(_copy, template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    await add_accounts(db, scenario)
    gateway = SandboxGateway(folder / "sandbox.db")
    business = business_hours(cfg.hours)
    start = scenario.start_time(business.tz)
    began = time.monotonic()

    def clock() -> dt.datetime:
        if start is None:
            return dt.datetime.now(UTC)
        return (start + timedelta(seconds=time.monotonic() - began)).astimezone(UTC)

    if scenario.call:
        cfg = dataclasses.replace(cfg, call=scenario.call_config(cfg.call))
    # The same builder as `ivr serve`: the config's payment rules apply to QA calls too.
    ctx = flow_context(cfg, db=db, gateway=gateway, agents_available=agents, hours=business,
                       clock=clock, first_key_ms=first_key_ms, next_key_ms=next_key_ms)
    world = World(scenario, db, gateway, ctx)
    try:
        yield world
    finally:
        await world.close()


def _copy(template: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)


async def add_accounts(db: Database, scenario: Scenario) -> None:
    today = date.today()
    async with db.write_session() as s:
        for spec in scenario.accounts:
            acct = Account(account_number=spec.account, name=spec.name, language=spec.language,
                           zip_code=spec.zip_code, balance_minor=spec.balance_minor,
                           currency="USD", sms_opt_in=False)
            for e164 in spec.phones:
                phone = (await s.execute(select(PhoneNumber).where(
                    PhoneNumber.e164 == e164))).scalar_one_or_none()
                acct.phones.append(phone or PhoneNumber(e164=e164))
            s.add(acct)
            await s.flush()
            if spec.card:
                token, brand, last4 = spec.card
                s.add(PaymentMethod(account_id=acct.id, token=token, brand=brand, last4=last4,
                                    exp_month=12, exp_year=today.year + 2))
            if spec.due_in_days is not None:
                due = today + timedelta(days=spec.due_in_days)
                s.add(Statement(account_id=acct.id, amount_due_minor=spec.balance_minor,
                                currency="USD", statement_date=due - timedelta(days=21),
                                due_date=due, status="open"))
