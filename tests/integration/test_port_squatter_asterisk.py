"""A box that already runs a PBX: another process holds 127.0.0.1:5038 (AMI) and :5060 (SIP).

`ivr asterisk start` moves the local instance to free ports and says which, the ivr
commands follow the move, a real call still works, and nothing claims a port it does not
hold; with --keep-ports it fails naming the port and what holds it.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import psutil
import pytest

from ivr import cli, config
from ivr.agi.server import AGIServer
from ivr.asterisk.local import (
    AsteriskNotFound,
    LocalAsterisk,
    Ports,
    apply_local_instance,
    find_asterisk,
    free_port,
)
from ivr.flows.demo import demo
from ivr.qa.asterisk_call import AsteriskCall, qa_ami
from tests.conftest import missing_real_part

pytestmark = pytest.mark.asterisk

AMI, SIP = 5038, 5060


def _squat(port: int, kind: int) -> socket.socket | None:
    """Hold a port like another PBX would; None when something else holds it already (the
    box really runs one): the premise holds either way."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as exc:
        s.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s


@pytest.fixture
def squatter() -> Iterator[list[socket.socket | None]]:
    held = [_squat(AMI, socket.SOCK_STREAM), _squat(SIP, socket.SOCK_DGRAM)]
    try:
        yield held
    finally:
        for s in held:
            if s is not None:
                s.close()


@pytest.fixture
def instance_env(monkeypatch) -> Iterator[tuple[str, str | None, int]]:
    """The environment of `ivr asterisk start` for a throwaway instance on default AMI and
    SIP ports (the squatted ones) and a free AGI port."""
    try:
        root, _ = find_asterisk(os.environ.get("STARPAY_ASTERISK_ROOT") or None)
    except AsteriskNotFound as exc:
        missing_real_part("Asterisk", str(exc))
        raise
    for var in [v for v in os.environ if v.startswith("STARPAY_")]:
        monkeypatch.delenv(var)
    name, agi = f"squat-{os.getpid()}", free_port()
    monkeypatch.setenv("STARPAY_CONFIG", os.devnull)  # nothing but the defaults below
    monkeypatch.setenv("STARPAY_ASTERISK_INSTANCE", name)
    monkeypatch.setenv("STARPAY_AGI_PORT", str(agi))
    if root:
        monkeypatch.setenv("STARPAY_ASTERISK_ROOT", str(root))
    yield name, str(root) if root else None, agi
    LocalAsterisk(name, root=root).remove()


def _held_by(pid: int, kind: str) -> set[int]:
    conns = psutil.Process(pid).net_connections(kind=kind)
    return {c.laddr.port for c in conns if kind == "udp" or c.status == "LISTEN"}


async def test_start_moves_off_taken_ports_and_a_call_still_works(
        squatter, instance_env, capsys) -> None:
    name, root, agi = instance_env
    assert cli.main(["asterisk", "start"]) == 0
    out = capsys.readouterr().out
    assert f"AMI port 127.0.0.1:{AMI} is held by" in out, out
    assert f"SIP port 127.0.0.1:{SIP} is held by" in out, out

    cfg = config.load()
    apply_local_instance(cfg)  # what every ivr command does: it follows the move
    assert cfg.ami.port != AMI and cfg.asterisk.sip_port != SIP
    assert f"AMI 127.0.0.1:{cfg.ami.port}," in out and f"SIP 127.0.0.1:{cfg.asterisk.sip_port}" \
        in out
    a = LocalAsterisk(name, root=root, ports=Ports(ami=cfg.ami.port, agi=agi,
                                                   sip=cfg.asterisk.sip_port))
    pid = a.pid()
    assert pid is not None
    # Asterisk itself holds the ports it was given, and neither squatted one.
    assert cfg.ami.port in _held_by(pid, "tcp") and AMI not in _held_by(pid, "tcp")
    assert cfg.asterisk.sip_port in _held_by(pid, "udp") and SIP not in _held_by(pid, "udp")

    assert cli.main(["asterisk", "status"]) == 0
    out = capsys.readouterr().out
    assert f"AMI 127.0.0.1:{cfg.ami.port}: listening" in out
    assert f"SIP 127.0.0.1:{cfg.asterisk.sip_port}: listening" in out
    assert f"AGI target 127.0.0.1:{agi}: nothing listens" in out

    async with AGIServer({"demo": demo}, port=agi):
        ami = await qa_ami(a)
        call = AsteriskCall(ami, caller_id="+15551234567", exten="3366")
        try:
            await call.start()
            await call.wait_for(r"GET DATA beep")
            await call.press("1234")
            said = await call.wait_for(r"SAY DIGITS", timeout=20)
            await call.wait_end(timeout=30)
        finally:
            await call.close()
            await ami.close()
    assert said.command.split()[2].strip('"') == "1234"

    assert cli.main(["asterisk", "cli", "foo bar"]) == 1
    assert "No such command" in capsys.readouterr().out
    assert cli.main(["asterisk", "cli", "core show uptime"]) == 0
    capsys.readouterr()
    assert cli.main(["asterisk", "stop"]) == 0
    assert capsys.readouterr().out.strip() == "asterisk stopped"
    assert cli.main(["asterisk", "stop"]) == 0
    assert "was not running" in capsys.readouterr().out


def test_keep_ports_fails_naming_the_port_and_its_holder(squatter, instance_env,
                                                         capsys) -> None:
    name, root, _ = instance_env
    assert cli.main(["asterisk", "start", "--keep-ports"]) == 1
    err = capsys.readouterr().err
    assert f"AMI port 127.0.0.1:{AMI} is held by" in err, err
    if squatter[0] is not None:  # the holder is this test's own socket
        assert f"held by {psutil.Process().name()} (pid {os.getpid()})" in err, err
    assert not LocalAsterisk(name, root=root).running()
