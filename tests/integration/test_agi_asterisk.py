"""AGIServer's promises to the dialplan, checked against the real Asterisk.

The unit tests prove what the server sends; these prove what Asterisk makes of it: a bare
FAILURE line must set AGISTATUS=FAILURE (so [starpay-call] goes to [starpay-fallback]) for
an unknown script, a handler that raises and a call over max_sessions, and a caller hanging
up during a command must reach the handler as AGIHangup.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ivr.agi import AGIHangup, AGIServer, AGISession
from ivr.ami.client import AMIClient
from ivr.qa.asterisk_call import AsteriskCall, qa_ami

pytestmark = pytest.mark.asterisk


@asynccontextmanager
async def qa_session(asterisk: Any) -> AsyncIterator[AMIClient]:
    ami = await qa_ami(asterisk)
    try:
        yield ami
    finally:
        await ami.close()


def fallback_entered(ami: AMIClient, call: AsteriskCall) -> asyncio.Future[Any]:
    """The first step of [starpay-fallback] on this call's service half; registered before
    the call starts so it cannot be missed."""
    return ami.wait_for(
        "Newexten",
        lambda e: (e.get("Uniqueid") == call.service_uid
                   and e.get("Context") == "starpay-fallback"),
        timeout=20)


async def assert_falls_back(ami: AMIClient, call: AsteriskCall) -> None:
    entered = fallback_entered(ami, call)
    await call.start()
    event = await entered
    # s,1 is NoOp(StarPay fallback: AGISTATUS=${AGISTATUS}); AppData is substituted.
    assert event.get("AppData") == "StarPay fallback: AGISTATUS=FAILURE"


async def test_unknown_script_falls_back(asterisk: Any) -> None:
    called: list[str] = []

    async def other(s: AGISession) -> None:
        called.append(s.script)

    # The dialplan asks for "pay"; this server knows only "other".
    async with AGIServer({"other": other}, port=asterisk.agi_port), qa_session(asterisk) as ami:
        call = AsteriskCall(ami)
        try:
            await assert_falls_back(ami, call)
        finally:
            await call.close()
    assert called == []
    # The console line sent before FAILURE reached Asterisk.
    assert any("no route for 'pay'" in h.command for h in call.heard)


async def test_handler_that_raises_falls_back(asterisk: Any) -> None:
    async def broken(s: AGISession) -> None:
        await s.answer()
        raise RuntimeError("bug in a flow")

    async with AGIServer({"pay": broken}, port=asterisk.agi_port), qa_session(asterisk) as ami:
        call = AsteriskCall(ami)
        try:
            await assert_falls_back(ami, call)
        finally:
            await call.close()
    assert [h.command.split()[0] for h in call.heard][:1] == ["ANSWER"]
    assert any("internal error" in h.command for h in call.heard)


async def test_caller_hangup_during_get_data_reaches_the_handler(asterisk: Any) -> None:
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def flow(s: AGISession) -> None:
        await s.answer()
        try:
            await s.get_data("beep", timeout_ms=30000, max_digits=4)
        except AGIHangup:
            outcome.set_result(f"AGIHangup, hung_up={s.hung_up}")
            raise
        except BaseException as exc:
            outcome.set_result(f"{type(exc).__name__}: {exc}")
            raise
        outcome.set_result("GET DATA returned")

    async with AGIServer({"pay": flow}, port=asterisk.agi_port), qa_session(asterisk) as ami:
        call = AsteriskCall(ami)
        fallback = fallback_entered(ami, call)
        try:
            await call.start()
            await call.wait_for(r"GET DATA beep")
            await call.hangup()  # the caller's phone hangs up while GET DATA waits for keys
            assert await asyncio.wait_for(outcome, 10) == "AGIHangup, hung_up=True"
            await call.wait_end(timeout=10)
        finally:
            await call.close()
        # AGISTATUS=HANGUP: the dialplan ends the call, no fallback.
        await asyncio.sleep(0.5)
        assert not fallback.done()
        fallback.cancel()


async def test_over_max_sessions_falls_back(asterisk: Any) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold(s: AGISession) -> None:
        await s.answer()
        inside.set()
        await release.wait()
        await s.hangup()  # a call the service ends without HANGUP falls back too

    server = AGIServer({"pay": hold}, port=asterisk.agi_port, max_sessions=1)
    async with server, qa_session(asterisk) as ami:
        first = AsteriskCall(ami)
        second = AsteriskCall(ami)
        try:
            await first.start()
            await asyncio.wait_for(inside.wait(), 15)
            await assert_falls_back(ami, second)
            assert server.refused == 1
            assert server.active_sessions == 1  # the first call was never disturbed
            release.set()
            await first.wait_end(timeout=15)
        finally:
            release.set()
            await first.close()
            await second.close()
    assert second.heard == []  # refused before a single command
