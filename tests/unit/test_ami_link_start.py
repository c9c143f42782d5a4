"""`ivr serve` logs in to AMI at start: a failure is said in one line at once, retried in the
background, and calls never wait on it (tested against a fake Asterisk manager on TCP)."""

from __future__ import annotations

import logging
import time

import pytest

from ivr.ami.errors import AMIConnectionError
from ivr.app import AmiLink
from ivr.asterisk.local import free_port
from ivr.config import Config
from tests.unit.test_agi_server import wait_until
from tests.unit.test_ami_client import SECRET, USER, FakeAMI


def _config(port: int, secret: str = SECRET) -> Config:
    cfg = Config()
    cfg.ami.port, cfg.ami.username, cfg.ami.secret = port, USER, secret
    cfg.ami.reconnect_max_delay = 1.0  # retry every second at most, for the test
    return cfg


def _login_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ivr.app" and r.levelno >= logging.ERROR]


async def test_asterisk_down_at_start_is_said_then_retried_and_calls_do_not_wait(
        caplog) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()  # nothing listens yet
    link = AmiLink(_config(port))
    fake = FakeAMI()
    try:
        t0 = time.monotonic()
        await link.start(timeout=1.0)
        assert time.monotonic() - t0 < 1.5
        [said] = _login_errors(caplog)
        assert f"cannot reach Asterisk's AMI at 127.0.0.1:{port}" in said
        assert "is Asterisk running" in said and "Retrying in the background" in said
        t1 = time.monotonic()
        with pytest.raises(AMIConnectionError, match="not logged in to AMI"):
            await link.agents_available()  # the flow takes this as "no agent"
        assert time.monotonic() - t1 < 0.1

        fake.port = port
        fake.queues = [{"Queue": "billing", "Available": "1"}]
        await fake.start()  # Asterisk comes up
        await wait_until(lambda: fake.logins > 0, 5.0)
        assert await link.agents_available() is True
        assert len(_login_errors(caplog)) == 1  # one line, not one per retry
    finally:
        await link.close()
        await fake.close()


async def test_a_wrong_secret_at_start_is_named_and_retried(caplog) -> None:
    fake = FakeAMI()
    await fake.start()
    link = AmiLink(_config(fake.port, secret="wrong"))
    try:
        await link.start(timeout=1.0)
        [said] = _login_errors(caplog)
        assert f"refused the AMI login for user {USER!r}" in said
        assert "STARPAY_AMI_SECRET" in said
        # The retry keeps knocking (and would get in once the secret is fixed).
        await wait_until(lambda: len(fake.actions("Login")) >= 3, 5.0)
    finally:
        await link.close()
        await fake.close()
    assert len(_login_errors(caplog)) == 1


async def test_a_reachable_asterisk_is_logged_in_at_start(caplog) -> None:
    fake = FakeAMI()
    await fake.start()
    link = AmiLink(_config(fake.port))
    try:
        await link.start()
        assert link.client.connected and fake.logins == 1
        assert _login_errors(caplog) == []
    finally:
        await link.close()
        await fake.close()
