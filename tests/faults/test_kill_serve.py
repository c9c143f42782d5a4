"""kill -9 of `ivr serve` in the middle of a real call on a real Asterisk.

The service is killed after the caller pressed 1 to pay and after the processor charged the
card, before our database recorded it (the worst moment: money moved, we don't know it).
The caller must not be left in silence (the dialplan falls back), and after a restart the
payment must be settled with exactly one charge at the processor.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ivr.qa.asterisk_call import AsteriskCall, qa_ami
from tests.faults.serve_proc import (
    IVR,
    ServeProcess,
    audit_count,
    balance,
    gateway_charges,
    payment_rows,
    seeded_sqlite,
    serve_env,
    wait_until,
)
from tests.fixtures.paused_gateway import PAUSE_ENV, PAUSED_IVR

pytestmark = pytest.mark.asterisk

ALEX = "+15551234567"  # account 100001, $84.17, Visa 4242 (always approved)


async def test_kill_9_after_confirm_falls_back_and_settles_once(asterisk: Any,
                                                                tmp_path: Path) -> None:
    url = await seeded_sqlite(tmp_path)
    ledger = tmp_path / "ledger.db"
    # The pause holds the service between the processor's answer and our commit.
    env = serve_env(asterisk, db_url=url, ledger=ledger, agi_port=asterisk.agi_port,
                    extra={PAUSE_ENV: "30"})
    serve = ServeProcess(env, tmp_path / "serve.log", tmp_path, command=[*PAUSED_IVR, "serve"])
    await asyncio.to_thread(serve.start)
    ami = await qa_ami(asterisk)
    contexts: list[tuple[str, str]] = []
    fallback = asyncio.Event()
    call = AsteriskCall(ami, caller_id=ALEX, attest="A")

    def on_exten(event: Any) -> None:
        if event.get("Uniqueid") == call.service_uid:
            contexts.append((event.get("Context"), event.get("Application")))
            if event.get("Context") == "starpay-fallback":
                fallback.set()

    ami.on("Newexten", on_exten)
    try:
        await call.start()
        # A caller who knows the menus presses 1 (pay) over the balance and 1 (confirm)
        # over the card on file: both prompts take 1 as an escape digit.
        await call.wait_for(r"starpay/balance_is", timeout=30)
        await call.press("1")
        await call.wait_for(r"starpay/card_on_file", timeout=30)
        await call.press("1")
        # The processor has charged; the service now sleeps before committing.
        await wait_until(lambda: gateway_charges(ledger), 15, "the processor's charge")
        (pending,) = await payment_rows(url)
        assert pending.state == "pending"
        killed_at = time.monotonic()
        serve.kill()
        await asyncio.wait_for(fallback.wait(), 10)
        fell_back_s = time.monotonic() - killed_at
        await asyncio.sleep(1.0)  # let the fallback's first prompt start
        assert ("starpay-fallback", "Playback") in contexts, contexts
    finally:
        await call.close()
        ami.off("Newexten", on_exten)
        await ami.close()
        serve.kill()

    # Restarted: the pending payment is older than the reconciler's min_age only after
    # minutes in production, so settle it the way an operator would, right away.
    serve.env.pop(PAUSE_ENV)
    await asyncio.to_thread(serve.start)
    try:
        out = await asyncio.to_thread(
            subprocess.run, [*IVR, "payments", "reconcile", "--min-age", "0"], env=serve.env,
            cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "1 approved" in out.stdout
        (settled,) = await payment_rows(url)
        assert settled.state == "approved" and settled.id == pending.id
        assert gateway_charges(ledger) == [(settled.idempotency_key, 8417, "approved")]
        assert await balance(url, "100001") == 0
        assert await audit_count(url, "payment.approved") == {f"payment:{settled.id}": 1}
    finally:
        serve.stop()
    print(f"kill -9 -> dialplan fallback in {fell_back_s:.2f} s")
