"""AMIClient against a real Asterisk (the session's private instance)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ivr.ami import AMIActionError, AMIClient, AMILoginError
from ivr.ami.events import header

pytestmark = pytest.mark.asterisk

ECHO = "Local/echo@starpay-test"


def _client(asterisk: Any, secret: str | None = None, **kw: Any) -> AMIClient:
    """The service's AMI user (what `ivr serve` logs in as)."""
    return AMIClient(asterisk.ami_host, asterisk.ami_port, asterisk.ami_username,
                     asterisk.ami_secret if secret is None else secret, **kw)


@pytest.fixture
async def ami(asterisk: Any) -> AsyncIterator[AMIClient]:
    client = _client(asterisk, reconnect_min_delay=0.2, reconnect_max_delay=2.0)
    await client.connect(timeout=10)
    yield client
    await client.close()


@pytest.fixture
async def admin(asterisk: Any) -> AsyncIterator[AMIClient]:
    """The instance's QA/admin user: hang-ups, CLI commands and queue members are its."""
    client = AMIClient(asterisk.ami_host, asterisk.ami_port, asterisk.qa_username,
                       asterisk.qa_secret, events="call")
    await client.connect(timeout=10)
    yield client
    await client.close()


async def _hang_up(ami: AMIClient, channel: str) -> None:
    # The qa-caller side waits 120 s: don't leave calls up for the next test.
    try:
        await ami.action({"Action": "Hangup", "Channel": channel})
    except AMIActionError:
        pass  # already gone


async def test_bad_secret_raises_login_error(asterisk):
    client = _client(asterisk, secret="not-the-secret")
    try:
        with pytest.raises(AMILoginError, match="refused the AMI login"):
            await client.connect(timeout=10)
        assert not client.connected
    finally:
        await client.close()


async def test_ping_and_command(ami, admin):
    assert await ami.ping()
    assert "Asterisk" in await admin.command("core show version")


async def test_the_service_user_holds_only_the_classes_it_uses(ami):
    """Least privilege, as Asterisk enforces it: the service's user may check the queue,
    originate and send messages, and nothing an attacker with its secret could turn into
    commands, reloads or hang-ups."""
    for refused in ({"Action": "Command", "Command": "core show version"},
                    {"Action": "Reload", "Module": "pbx_config"},
                    {"Action": "Hangup", "Channel": "Local/none@nowhere-00000000;1"},
                    {"Action": "QueueAdd", "Queue": "billing", "Interface": ECHO},
                    {"Action": "GetConfig", "Filename": "manager.conf"},
                    {"Action": "Originate", "Channel": ECHO, "Application": "System",
                     "Data": "true", "Async": "true"}):
        # ("app or data blacklisted": System() in an Originate needs the system class.)
        with pytest.raises(AMIActionError, match="Permission denied|Access Forbidden"):
            await ami.action(refused, timeout_s=5)
    assert [q.queue for q in await ami.queue_summary("billing")] == ["billing"]
    # MessageSend is allowed: it fails on the unknown destination, not on permission.
    with pytest.raises(AMIActionError) as sent:
        await ami.action({"Action": "MessageSend", "To": "pjsip:nobody-here",
                          "From": "sip:starpay", "Body": "hi"}, timeout_s=5)
    assert "Permission denied" not in str(sent.value)


async def test_dialplan_reload_on_the_local_instance_uses_its_admin_user(
        asterisk, monkeypatch, capsys):
    from ivr import cli

    for var in [v for v in os.environ if v.startswith("STARPAY_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("STARPAY_CONFIG", os.devnull)
    monkeypatch.setenv("STARPAY_ASTERISK_INSTANCE", asterisk.name)
    monkeypatch.setenv("STARPAY_AMI_PORT", str(asterisk.ami_port))
    if asterisk.root:
        monkeypatch.setenv("STARPAY_ASTERISK_ROOT", str(asterisk.root))
    assert await asyncio.to_thread(cli.main, ["dialplan", "reload", "--all"]) == 0
    assert "reloaded pbx_config, app_queue, app_voicemail" in capsys.readouterr().out


async def test_originate_answered_gives_success_reason_4(ami, admin):
    result = await ami.originate(ECHO, context="qa-caller", exten="s", timeout_ms=10000,
                                 caller_id='"Test" <+15551234567>')
    try:
        assert (result.response, result.reason) == ("Success", 4), result
        assert result.uniqueid and result.channel.startswith(ECHO)
    finally:
        await _hang_up(admin, result.channel)


async def test_originate_to_busy_target_gives_failure(ami):
    result = await ami.originate("Local/busy@starpay-test", context="qa-caller", exten="s",
                                 timeout_ms=10000)
    assert result.response == "Failure" and not result.success
    assert result.reason == 5, result.reason_text


async def test_originate_to_unknown_endpoint_gives_failure(ami):
    result = await ami.originate("PJSIP/no-such-endpoint", context="qa-caller", exten="s",
                                 timeout_ms=5000)
    assert result.response == "Failure" and result.reason == 0


async def test_queue_summary_has_the_billing_queue(ami):
    summary = await ami.queue_summary()
    names = [q.queue for q in summary]
    assert "billing" in names, names
    billing = await ami.queue_summary("billing")
    assert [q.queue for q in billing] == ["billing"]
    assert billing[0].callers == 0


# Restarts the session's Asterisk: kept last in this file.
async def test_reconnects_after_asterisk_restart_and_events_resume(asterisk, ami):
    # Restarts Asterisk: the admin fixture's client would be cut, so it logs in after.
    reconnected = ami.wait_for("Reconnected", timeout=120)
    await asyncio.to_thread(asterisk.restart)
    await reconnected
    assert ami.connected and ami.reconnects >= 1
    new_channel = ami.wait_for(
        "Newchannel", lambda e: header(e, "Channel").startswith(ECHO), timeout=20)
    result = await ami.originate(ECHO, context="qa-caller", exten="s", timeout_ms=10000)
    try:
        assert result.success, result
        assert header(await new_channel, "Channel").startswith(ECHO)
    finally:
        admin = AMIClient(asterisk.ami_host, asterisk.ami_port, asterisk.qa_username,
                          asterisk.qa_secret, events="off")
        await admin.connect(timeout=10)
        await _hang_up(admin, result.channel)
        await admin.close()


async def test_queue_add_and_remove_answer_at_once(asterisk) -> None:
    """panoramisk takes QueueAdd's reply for the start of a list; ours must not wait."""
    client = AMIClient(asterisk.ami_host, asterisk.ami_port, asterisk.qa_username,
                       asterisk.qa_secret)  # queue members are the admin's
    await client.connect()
    try:
        member = "Local/echo@starpay-test"
        added = await client.action({"Action": "QueueAdd", "Queue": "billing",
                                     "Interface": member}, timeout_s=5)
        assert added["Response"] == "Success"
        summary = await client.queue_summary("billing")
        assert summary[0].logged_in == 1
        removed = await client.action({"Action": "QueueRemove", "Queue": "billing",
                                       "Interface": member}, timeout_s=5)
        assert removed["Response"] == "Success"
        assert (await client.queue_summary("billing"))[0].logged_in == 0
    finally:
        await client.close()
