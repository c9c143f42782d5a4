"""Garbage, one-byte-per-second and never-ending traffic on the FastAGI port while calls go on.

The server (one event loop) must stay responsive: full *PAY calls from FakeAsterisk finish in
about the time they take on a quiet port, a real call through the real Asterisk pays, every
payment is made exactly once, and the hostile connections are dropped within the header
timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivr.agi.server import AGIServer
from ivr.flows import routes
from ivr.qa.asterisk_call import AsteriskCall, qa_ami
from tests.unit.pay_world import ALEX, World, make_world, played

pytestmark = pytest.mark.asterisk

ROOT = Path(__file__).resolve().parents[2]

ATTACK_S = 6.0  # how long the hostile clients keep at it
HEADER_TIMEOUT = 3.0
CALLERS = [(f"+155500040{i:02d}", f"4000{i:02d}") for i in range(10)]
QUIET, ATTACKED = CALLERS[:5], CALLERS[5:]
STEPS = (("main_menu", "1"), ("pay_confirm_press", "1"))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        for phone, number in CALLERS:
            await w.add_account(number, phone, "tok_sandbox_approve", balance=2500)
        yield w


async def loop_lag(until: float) -> float:
    """Worst lateness of a 10 ms timer on this loop (the server's loop) while attacked."""
    worst = 0.0
    while time.monotonic() < until:
        t0 = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - t0 - 0.01)
    return worst


async def timed_call(world: World, phone: str) -> float:
    """One full paying call; its duration in seconds."""
    t = time.monotonic()
    fake = await world.call(*STEPS, callerid=phone)
    assert "approved" in played(fake), played(fake)
    return time.monotonic() - t


async def real_call(asterisk: Any) -> list[str]:
    ami = await qa_ami(asterisk)
    call = AsteriskCall(ami, caller_id=ALEX, attest="A")
    try:
        await call.start()
        await call.wait_for(r"starpay/balance_is", timeout=20)
        await call.press("1")
        await call.wait_for(r"starpay/card_on_file", timeout=20)
        await call.press("1")
        await call.wait_for(r"starpay/approved", timeout=20)
        return [h.sound or "" for h in call.heard]
    finally:
        await call.close()
        await ami.close()


async def test_hostile_traffic_leaves_calls_unaffected(world: World, asterisk: Any) -> None:
    # The world's pay flow, also on the port the real Asterisk's dialplan calls.
    server = AGIServer(routes(world.ctx), host="127.0.0.1", port=asterisk.agi_port,
                       header_timeout=HEADER_TIMEOUT)
    world.server.header_timeout = HEADER_TIMEOUT
    await server.start()
    attacker: asyncio.subprocess.Process | None = None
    try:
        # Quiet port first: how long five concurrent paying calls take here.
        quiet = await asyncio.gather(*(timed_call(world, phone) for phone, _ in QUIET))
        until = time.monotonic() + ATTACK_S
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.faults.agi_attack", str(ATTACK_S),
            str(world.server.port), str(server.port), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE)
        lag = asyncio.ensure_future(loop_lag(until))
        phone_call = asyncio.ensure_future(real_call(asterisk))
        await asyncio.sleep(0.5)  # the attack is under way
        attacked = await asyncio.gather(*(timed_call(world, phone) for phone, _ in ATTACKED))
        heard = await asyncio.wait_for(phone_call, 40)
        out, _ = await asyncio.wait_for(attacker.communicate(), ATTACK_S + 15)
        results = json.loads(out)
        worst_lag = await lag
    finally:
        if attacker is not None and attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
        await server.close()

    assert "starpay/approved" in heard
    # Under attack a call takes about as long as on a quiet port (generous for slow CI).
    assert max(attacked) < 2 * max(quiet) + 1.0, (quiet, attacked)
    assert worst_lag < 0.5, worst_lag
    assert results["garbage"] == 200
    assert all(results["slow_hung_up"]), "a one-byte-a-second client outlived the timeout"
    # Exactly one payment per paying call, each charged once at the processor.
    payments = await world.payments()
    assert sorted(p.state for p in payments) == ["approved"] * (len(CALLERS) + 1)
    assert len(world.gateway.approved_charges()) == len(CALLERS) + 1
    assert await world.balance("100001") == 0
    for _, number in CALLERS:
        assert await world.balance(number) == 0
    print(f"5 calls: quiet max {max(quiet) * 1000:.0f} ms; under attack max "
          f"{max(attacked) * 1000:.0f} ms; "
          f"worst loop lag {worst_lag * 1000:.0f} ms; flooded "
          f"{results['flooded'] / 1e6:.1f} MB")
