"""`ivr dialplan install|check|uninstall` on the configuration Asterisk ships.

The stock sample .conf files of the Asterisk package (Debian installs all of them; minivm.conf
has a Latin-1 byte in a comment) are copied to a temp dir: install, check, a real Asterisk on
that configuration answers *PAY through our include, and uninstall leaves every byte and file
name as it was.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from ivr.agi import AGIServer, AGISession
from ivr.ami.client import AMIClient
from ivr.asterisk.local import AsteriskNotFound, LocalAsterisk, find_asterisk
from ivr.asterisk_admin import install as installer
from ivr.cli import main
from tests.conftest import missing_real_part

pytestmark = pytest.mark.asterisk


def stock_config() -> Path:
    try:
        root, _ = find_asterisk()
    except AsteriskNotFound as exc:
        missing_real_part("Asterisk", str(exc))
        raise  # unreachable: missing_real_part fails or skips
    stock = (root or Path("/")) / "etc" / "asterisk"
    if not (stock / "extensions.conf").exists() or not (stock / "minivm.conf").exists():
        missing_real_part("Asterisk's stock sample configuration", f"{stock} lacks the samples")
    return stock


def tree(d: Path) -> dict[str, bytes | str]:
    """Every file's bytes (a symlink's target) by path under ``d``; directories too."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(d))
            if path.is_symlink():
                out[rel] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                out[rel] = "<dir>"
            else:
                out[rel] = path.read_bytes()
    return out


async def call_star_pay(instance: LocalAsterisk) -> list[tuple[str, str]]:
    """Originate Local/*PAY@starpay over AMI; (script, channel) of every AGI that came in."""
    reached: list[tuple[str, str]] = []
    arrived = asyncio.Event()

    async def pay(session: AGISession) -> None:
        reached.append((session.script, session.channel))
        arrived.set()

    async with AGIServer({"pay": pay}, port=instance.agi_port):
        ami = AMIClient(instance.ami_host, instance.ami_port, instance.ami_username,
                        instance.ami_secret)
        await ami.connect(timeout=10)
        try:
            result = await ami.originate("Local/*PAY@starpay", application="Wait", data="5",
                                         timeout_ms=10000)
            assert result.response == "Success", result
            await asyncio.wait_for(arrived.wait(), timeout=15)
        finally:
            await ami.close()
    return reached


def test_stock_configuration_round_trip(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    etc = tmp_path / "asterisk"
    shutil.copytree(stock_config(), etc, symlinks=True)
    before = tree(etc)
    minivm = before["minivm.conf"]
    assert isinstance(minivm, bytes)
    with pytest.raises(UnicodeDecodeError):  # else this test no longer tests what it says
        minivm.decode("utf-8")

    assert main(["dialplan", "install", "--to", str(etc)]) == 0
    out = capsys.readouterr().out
    for host, ours in (("extensions.conf", installer.DIALPLAN),
                       ("queues.conf", installer.QUEUES),
                       ("voicemail.conf", installer.VOICEMAIL)):
        assert f"added #include {ours} at the top of {etc / host}" in out, out
    assert main(["dialplan", "check", str(etc)]) == 0, capsys.readouterr().out

    # Asterisk runs on a copy, as a box of its own needs what an admin edits anyway: the
    # instance puts in asterisk.conf (directories), manager.conf (AMI port and user) and the
    # settings file (where the AGI server listens); the stock pjsip.conf has no transport,
    # so it gets an #include of the instance's. Everything else is stock plus our install.
    running = tmp_path / "running"
    shutil.copytree(etc, running, symlinks=True)
    with open(running / "pjsip.conf", "ab") as pjsip:
        pjsip.write(b"\n#include pjsip_starpay_transport.conf\n")
    instance = LocalAsterisk(f"stock-dialplan-{os.getpid()}", config_dir=running)
    try:
        instance.start(timeout=120)
        reached = asyncio.run(call_star_pay(instance))
        assert [script for script, _ in reached] == ["pay"]
        assert reached[0][1].startswith("Local/*PAY@starpay-"), reached
        # Our queue and mailbox came in through the includes in the stock files.
        assert "billing has" in instance.cli("queue show billing")
        assert "billing" in instance.cli("voicemail show users for starpay")
    finally:
        instance.remove()

    assert main(["dialplan", "uninstall", "--from", str(etc)]) == 0
    assert tree(etc) == before
    assert (etc / "minivm.conf").read_bytes() == minivm
