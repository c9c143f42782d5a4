"""The project's call scenarios (tests/scenarios/*.yaml) on both targets, and the terminal
phone (`ivr qa call`) driven through its stdin against the session's real Asterisk."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.agi.server import AGIServer
from ivr.flows import routes
from ivr.qa.report import describe
from ivr.qa.runner import run_scenarios
from ivr.qa.scenario import load_all
from ivr.storage.models import Payment
from tests.unit.pay_world import make_world

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _check(results: list, target: str) -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert len(results) == len(files) >= 15
    assert {r.target for r in results} == {target}
    failed = [describe(r) for r in results if not r.passed]
    assert not failed, "\n".join(failed)


async def test_every_scenario_passes_on_the_emulator() -> None:
    results = await run_scenarios(load_all([SCENARIOS]), "emulator")
    _check(results, "emulator")


@pytest.mark.asterisk
async def test_every_scenario_passes_on_a_real_asterisk(asterisk) -> None:
    scenarios = load_all([SCENARIOS])
    began = time.monotonic()
    results = await run_scenarios(scenarios, "asterisk", instance=asterisk,
                                  jobs=len(scenarios))
    took = time.monotonic() - began
    _check(results, "asterisk")
    assert took < 180, f"all scenarios took {took:.0f} s on the real Asterisk"


@pytest.mark.asterisk
async def test_terminal_phone_pays_through_stdin(asterisk, tmp_path: Path) -> None:
    """`ivr qa call` as a subprocess: it prints the prompts' text as they play, and the
    keys written to its stdin pay the bill on the real Asterisk."""
    async with make_world(tmp_path) as world:
        async with AGIServer(routes(world.ctx), port=asterisk.agi_port):
            env = dict(os.environ, STARPAY_ASTERISK_INSTANCE=asterisk.name,
                       STARPAY_ASTERISK_ROOT=str(asterisk.root or ""),
                       STARPAY_AMI_PORT=str(asterisk.ami_port),
                       STARPAY_AGI_PORT=str(asterisk.agi_port),
                       STARPAY_ASTERISK_SIP_PORT=str(asterisk.ports.sip))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ivr", "qa", "call", "--from", "+15551234567",
                "--attest", "A", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env)
            assert proc.stdin is not None and proc.stdout is not None
            seen = ""

            async def until(text: str, timeout: float = 45) -> None:
                nonlocal seen
                async with asyncio.timeout(timeout):
                    while text not in seen:
                        chunk = await proc.stdout.read(4096)
                        assert chunk, f"ivr qa call ended before {text!r}:\n{seen}"
                        seen += chunk.decode()

            try:
                await until("To pay the full balance, press 1.")
                proc.stdin.write(b"1\n")
                await until("To cancel, press 2.")
                proc.stdin.write(b"1\n")
                await until("Your payment was approved.")
                proc.stdin.write(b"h\n")
                await until("[call ended")
                assert await asyncio.wait_for(proc.wait(), 15) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        async with world.db.session() as s:
            payments = list((await s.execute(select(Payment))).scalars())
    assert [(p.state, p.amount_minor) for p in payments] == [("approved", 8417)]
    # Pieces of a sentence share its line: the balance is read as one line of text.
    assert "Your balance is eighty" in seen and "[you hung up]" in seen
