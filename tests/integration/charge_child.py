"""Run one charge in a child process (used by the crash test, which SIGKILLs it while the
paused gateway holds it after the charge: set PAUSE_ENV)."""

from __future__ import annotations

import asyncio
import sys

from ivr.gateways.sandbox import SandboxGateway
from ivr.services.payments import PaymentService
from ivr.storage.db import Database
from tests.fixtures.paused_gateway import paused_from_env


async def main(url: str, ledger: str, account_id: int, key: str) -> None:
    db = Database(url)
    gw = paused_from_env(SandboxGateway(ledger))
    out = await PaymentService(db, gw).charge(account_id, 1000, "ivr", key, "call-crash")
    print(out, flush=True)
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
