"""`ivr serve` as a real process: SIGTERM lets the live call finish, then it exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from ivr.asterisk.local import free_port
from ivr.qa.fake_asterisk import FakeAsterisk

GRACE = 10.0


async def test_sigterm_lets_the_live_call_finish_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARPAY_")}
    # Port 0 is refused by the config check, hence a free port picked here.
    env.update(STARPAY_AGI_PORT=str(port), STARPAY_AGI_SHUTDOWN_GRACE=str(GRACE))
    # cwd: the default relative database paths land in tmp_path, not in the tree.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "serve", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert b"listening" in await proc.stdout.readline()
            # The demo flow: ANSWER, STREAM FILE, GET DATA, ...; hold the GET DATA reply.
            fake = await FakeAsterisk(port, script="demo", keys="942#").connect()
            while (cmd := await fake.read_command()) is not None and cmd.verb != "GET DATA":
                await fake.reply(await fake.answer(cmd))
            assert cmd is not None, fake.verbs()

            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert b"stopping: 1 live call(s)" in await proc.stdout.readline()
            await asyncio.sleep(0.5)  # still mid-call: the process must wait for it
            assert proc.returncode is None

            await fake.reply(await fake.answer(cmd))
            await fake.run()  # the rest of the call, until the server hangs up
            exit_code = await proc.wait()
            took = time.monotonic() - signalled
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert fake.verbs() == ["ANSWER", "STREAM FILE", "GET DATA", "STREAM FILE", "SAY DIGITS",
                            "STREAM FILE", "HANGUP"]
    assert fake.transcript[4].args[0] == "42"  # the call really went on after SIGTERM
    assert fake.agi_status == "HANGUP"  # the flow's own HANGUP ended it, as it should
    assert exit_code == 0
    assert took < GRACE
