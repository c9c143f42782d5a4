"""Ports the local Asterisk binds: a taken one is moved off (or refused), naming its holder."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import psutil
import pytest

from ivr.asterisk.local import (
    AsteriskFailed,
    Ports,
    bound_by,
    claim_ports,
    free_port,
    port_free,
)


@pytest.fixture
def held() -> Iterator[tuple[socket.socket, socket.socket]]:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp = socket.socket(type=socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    yield tcp, udp
    tcp.close()
    udp.close()


def test_taken_ports_move_to_free_ones_and_say_who_held_them(held) -> None:
    tcp, udp = held
    ami, sip = tcp.getsockname()[1], udp.getsockname()[1]
    ports = Ports(ami=ami, agi=4573, sip=sip)
    moves = claim_ports(ports)
    assert [(m.what, m.asked) for m in moves] == [("AMI", ami), ("SIP", sip)]
    assert ports.ami not in (ami, 0) and ports.sip not in (sip, 0) and ports.agi == 4573
    assert port_free(ports.ami) and port_free(ports.sip, socket.SOCK_DGRAM)
    me = f"{psutil.Process().name()} (pid {os.getpid()})"
    assert str(moves[0]) == f"AMI port 127.0.0.1:{ami} is held by {me}; using {ports.ami}"


def test_free_ports_stay_and_keep_ports_refuses_a_taken_one(held) -> None:
    tcp, _ = held
    free = Ports(ami=free_port(), agi=1, sip=free_port(socket.SOCK_DGRAM))
    before = Ports(**vars(free))
    assert claim_ports(free) == [] and free == before
    taken = tcp.getsockname()[1]
    with pytest.raises(AsteriskFailed, match=rf"AMI port 127.0.0.1:{taken} is held by .*"
                                             rf"pid {os.getpid()}"):
        claim_ports(Ports(ami=taken, agi=1, sip=free.sip), move=False)


def test_bound_by_tells_our_own_listener_from_another_port(held) -> None:
    tcp, udp = held
    assert bound_by(os.getpid(), tcp.getsockname()[1])
    assert bound_by(os.getpid(), udp.getsockname()[1], socket.SOCK_DGRAM)
    assert not bound_by(os.getpid(), free_port())
