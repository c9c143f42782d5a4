"""`ivr qa call` on the session's real Asterisk, driven the ways a QA person drives it: keys
from a file, /dev/null, the demo extension, the service down, and a caller that stays as
long as --timeout says."""

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
from ivr.flows.demo import demo
from ivr.qa.asterisk_call import AsteriskCall, qa_ami
from ivr.storage.models import Payment
from tests.unit.pay_world import make_world

pytestmark = pytest.mark.asterisk


def _env(asterisk) -> dict[str, str]:
    return dict(os.environ, STARPAY_ASTERISK_INSTANCE=asterisk.name,
                STARPAY_ASTERISK_ROOT=str(asterisk.root or ""),
                STARPAY_AMI_PORT=str(asterisk.ami_port), STARPAY_AGI_PORT=str(asterisk.agi_port),
                STARPAY_ASTERISK_SIP_PORT=str(asterisk.ports.sip))


async def _phone(asterisk, stdin_path: Path | str, *args: str,
                 timeout: float = 90) -> tuple[int, str, str]:
    with open(stdin_path, "rb") as stdin:  # noqa: ASYNC230 (opening is instant)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr", "qa", "call", *args, stdin=stdin,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(asterisk))
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_keys_from_a_file_pay_and_its_end_hangs_up(asterisk, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("1\n1\n")  # pay the full balance; confirm
    async with make_world(tmp_path) as world:
        async with AGIServer(routes(world.ctx), port=asterisk.agi_port):
            rc, out, err = await _phone(asterisk, keys, "--from", "+15551234567",
                                        "--attest", "A")
        async with world.db.session() as s:
            payments = list((await s.execute(select(Payment))).scalars())
    assert rc == 0, err
    assert "Pipe transport" not in err and "Traceback" not in err
    assert "Your payment was approved." in out
    assert "[end of input: hanging up]" in out or "[the service hung up]" in out
    assert [(p.state, p.amount_minor) for p in payments] == [("approved", 8417)]


async def test_dev_null_with_the_service_down_shows_the_fallback_and_hangs_up(
        asterisk) -> None:
    """Nothing on the AGI port: the dialplan's own Playback is shown, end of input ends it."""
    rc, out, err = await _phone(asterisk, os.devnull, "--from", "+15551234567")
    assert "Traceback" not in err and "PermissionError" not in err, err
    assert "We are sorry, our payment system is having trouble right now." in out
    assert "[end of input: hanging up]" in out
    assert rc == 0, err


async def test_the_demo_extension_shows_what_the_service_plays(asterisk, tmp_path: Path
                                                               ) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("#\n1234\n")  # skip the greeting, then the four digits
    async with AGIServer({"demo": demo}, port=asterisk.agi_port):
        rc, out, err = await _phone(asterisk, keys, "--exten", "3366")
    assert rc == 0, err
    assert "[the service plays hello-world]" in out
    assert "[the service says the digits 1234]" in out


async def test_a_wrong_number_or_extension_is_refused_in_words(asterisk) -> None:
    rc, _, err = await _phone(asterisk, os.devnull, "--from", "12ab")
    assert rc == 2 and "is not a phone number" in err and "Traceback" not in err
    rc, _, err = await _phone(asterisk, os.devnull, "--exten", "9999")
    assert rc == 2 and "no extension of the [starpay] dialplan" in err
    assert "*PAY" in err and "3366" in err and "RuntimeError" not in err


async def test_the_caller_side_waits_as_long_as_qa_wait_says(asterisk) -> None:
    """[qa-caller] waits QA_WAIT seconds (the phone sets it from --timeout), not 120."""
    ami = await qa_ami(asterisk)
    call = AsteriskCall(ami, exten="echo", context="starpay-test", variables={"QA_WAIT": "2"})
    try:
        began = time.monotonic()
        await call.start()
        await call.wait_end(timeout=20)
        assert time.monotonic() - began < 15  # echo alone would hold the line for 30 s
    finally:
        await call.close()
        await ami.close()
