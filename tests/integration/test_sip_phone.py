"""A real SIP phone pays a *PAY call: sipp dials as the demo softphone through the PJSIP
endpoint of the session's Asterisk and types every key as an RFC 4733 telephone-event,
80 ms of silence between the keys of an entry.

The endpoint presents Alex's number (+15551234567) but carries no STIR/SHAKEN attestation,
so the caller ID is not trusted: the phone types the account number and the ZIP, then the
menu keys. Its keys are fixed before the call (ivr.qa.key_timeline: a dry run of the same
call on the emulator, timed by the built prompts' lengths), as a phone replaying a
recording would be.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from ivr.agi.server import AGIServer
from ivr.flows import routes
from ivr.qa import sip_phone
from ivr.qa.key_timeline import Step, timeline
from tests.conftest import missing_real_part
from tests.unit.pay_world import ALEX, make_world

pytestmark = pytest.mark.asterisk

STEPS = [Step("ask_account", "100001#"), Step("verify_zip", "10001"),
         Step("main_menu", "1"), Step("pay_confirm_press", "1")]
AFTER_LAST_KEY_S = 60.0  # approved, the confirmation number, goodbye: then Asterisk's BYE


@pytest.fixture(scope="session")
def sipp() -> str:
    try:
        return sip_phone.find_sipp()
    except sip_phone.SippMissing as exc:
        missing_real_part("sipp", str(exc))
        raise  # unreachable: missing_real_part fails or skips


async def test_sip_phone_pays_with_keys_80_ms_apart(asterisk, sipp, tmp_path: Path) -> None:
    async with make_world(tmp_path / "dry") as dry:
        entries = await timeline(dry.server.port, STEPS, callerid=ALEX)
    async with make_world(tmp_path / "call") as world:
        # Production pauses: a key typed just after a prompt still counts.
        ctx = dataclasses.replace(world.ctx, first_key_ms=5000, next_key_ms=3000)
        async with AGIServer(routes(ctx), port=asterisk.agi_port):
            phone = await asyncio.to_thread(
                sip_phone.call, asterisk, entries, tmp_path / "phone",
                hold_s=entries[-1].at + AFTER_LAST_KEY_S)
        payments = await world.payments()
        record = await world.last_record()

    assert phone.completed, phone.output[-3000:]
    assert phone.asterisk_hung_up, "the service never ended the call"
    assert record.ani == ALEX and record.attestation is None
    # Every key of every entry arrived: the account was found and the ZIP matched first time.
    assert record.verified_how == "zip"
    assert record.path[:3] == ["account-number", "verified:zip", "menu:1"], record.path
    assert [(p.state, p.amount_minor) for p in payments] == [("approved", 8417)]
    assert record.outcome == "paid"
