"""The whole path on a real Asterisk: dialplan → FastAGI → handler → keypad, and fallback."""

from __future__ import annotations

import asyncio

import pytest

from ivr.agi.server import AGIServer
from ivr.agi.session import AGISession
from ivr.flows.demo import demo
from ivr.qa.asterisk_call import AsteriskCall, qa_ami

pytestmark = pytest.mark.asterisk


@pytest.mark.parametrize(("exten", "script", "attest"),
                         [("*PAY", "pay", "A"), ("7729", "pay", "A"), ("3366", "demo", None)])
async def test_demo_call_sees_ani_and_digits(asterisk, exten, script, attest):
    seen: dict[str, str | None] = {}

    async def observed_demo(session: AGISession) -> None:
        seen["ani"] = session.callerid
        seen["script"] = session.script
        seen["attest"] = session.args[0] if session.args else None
        await demo(session)

    async with AGIServer({script: observed_demo}, port=asterisk.agi_port):
        ami = await qa_ami(asterisk)
        call = AsteriskCall(ami, caller_id="+15551234567", exten=exten, attest="A")
        try:
            await call.start()
            greeting = await call.wait_for(r"STREAM FILE hello-world")
            prompt = await call.wait_for(r"GET DATA beep")
            await call.press("1234")
            said = await call.wait_for(r"SAY DIGITS", timeout=20)
            await call.wait_end(timeout=30)
        finally:
            await call.close()
            await ami.close()

    # The demo extension passes no attestation argument; *PAY and 7729 hand it over.
    assert seen == {"ani": "+15551234567", "script": script, "attest": attest}
    assert said.command.split()[2].strip('"') == "1234"
    assert greeting.at < prompt.at < said.at
    # The greeting really played: a missing file returns at once with endpos=0.
    assert greeting.result and "endpos=0" not in greeting.result


async def test_keys_queued_as_received_reach_the_flow_and_events_carry_their_lag(asterisk):
    """The load generator's way of pressing keys (PlayDTMF Receive on the service channel)
    gets the digits to the flow like a phone's, and prompt events say how late they are."""
    async with AGIServer({"demo": demo}, port=asterisk.agi_port):
        ami = await qa_ami(asterisk)
        call = AsteriskCall(ami, caller_id="+15551234567", exten="3366")
        try:
            await call.start()
            prompt = await call.wait_for(r"GET DATA beep")
            await call.press("1234", as_received=True)
            said = await call.wait_for(r"SAY DIGITS", timeout=20)
            await call.wait_end(timeout=30)
        finally:
            await call.close()
            await ami.close()

    assert said.command.split()[2].strip('"') == "1234"
    assert call.service_channel and call.service_channel.endswith(";2")
    assert prompt.lag is not None and -1.0 < prompt.lag < 5.0


async def test_service_down_falls_back_to_a_message(asterisk):
    """Nothing listens on the AGI port: AGISTATUS=FAILURE sends the call to the fallback,
    which speaks and offers voicemail instead of ending in silence."""
    ami = await qa_ami(asterisk)
    apps: list[tuple[str, str]] = []
    done = asyncio.Event()

    def on_exten(event) -> None:
        if event.get("Context", "").startswith("starpay-"):
            apps.append((event.get("Context"), event.get("Application")))
            if event.get("Application") == "VoiceMail":
                done.set()

    ami.on("Newexten", on_exten)
    call = AsteriskCall(ami, caller_id="+15551234567")
    try:
        await call.start()
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await call.close()
        await ami.close()
    assert ("starpay-call", "AGI") in apps
    assert ("starpay-fallback", "Playback") in apps
    assert ("starpay-voicemail", "VoiceMail") in apps
