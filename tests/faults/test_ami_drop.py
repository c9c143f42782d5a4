"""The AMI connection drops in the middle of the call flow (tests/integration/
test_ami_asterisk.py covers a full Asterisk restart; this covers what a caller meets).

A loopback TCP proxy sits between StarPay's AMI client and the real Asterisk; cutting it
resets every AMI connection and refuses new ones. While it is cut, a caller asking for an
agent gets the no-agent path (callback or voicemail), not an error; once it is back the
client reconnects by itself, the agents check answers again and events flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivr.ami.client import AMIClient
from ivr.app import AmiLink
from ivr.config import Config
from ivr.qa.fake_asterisk import FakeAsterisk
from tests.faults.serve_proc import wait_until
from tests.unit.pay_world import ALEX, World, make_world, played

pytestmark = pytest.mark.asterisk

AGENT = "Local/echo@starpay-test"  # a queue member that counts as ready


class CutProxy:
    """Forwards loopback TCP to ``target``; ``cut()`` resets every link and refuses new
    ones until ``mend()``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.cut_now = False
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)

    async def _link(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.cut_now:
            w.transport.abort()
            return
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        self._links |= {w, uw}
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w))

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        w.transport.abort()
        self._links.discard(w)

    def cut(self) -> None:
        self.cut_now = True
        for w in list(self._links):
            w.transport.abort()  # RST both ways, like a dropped link

    def mend(self) -> None:
        self.cut_now = False

    async def close(self) -> None:
        self.cut()
        if self._server:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


async def test_agents_check_during_an_ami_drop_gives_the_no_agent_path(
        asterisk: Any, world: World) -> None:
    proxy = CutProxy(asterisk.ami_port)
    await proxy.start()
    admin = AMIClient(asterisk.ami_host, asterisk.ami_port, asterisk.qa_username,
                      asterisk.qa_secret)  # queue members are the admin's, not the service's
    await admin.connect()
    cfg = Config()
    cfg.ami.port, cfg.ami.secret, cfg.ami.reconnect_max_delay = (
        proxy.port, asterisk.ami_secret, 1.0)
    link = AmiLink(cfg)
    agents = link.agents_available  # what `ivr serve` wires into the pay flow
    world.ctx.agents_available = agents
    # A second client through the proxy, for events.
    events = AMIClient(asterisk.ami_host, proxy.port, asterisk.ami_username,
                       asterisk.ami_secret, reconnect_min_delay=0.2, reconnect_max_delay=1.0)
    await events.connect()
    seen: list[str] = []
    events.on("Newchannel", lambda e: seen.append(e.get("Channel", "")))
    await admin.command(f"queue add member {AGENT} to billing")
    try:
        before = await world.call(("main_menu", "0"), callerid=ALEX)
        assert _sets(before).get("STARPAY_NEXT") == "queue"  # an agent is ready

        proxy.cut()
        await wait_until(lambda: not events.connected, 5, "the AMI link to drop")
        t0 = time.monotonic()
        during = await world.call(("main_menu", "0"), ("callback_in_offer", "2"),
                                  callerid=ALEX)
        during_s = time.monotonic() - t0
        ids = played(during)
        assert during.agi_status != "FAILURE"
        assert "agents_busy" in ids and _sets(during)["STARPAY_NEXT"] == "voicemail"
        assert "service_trouble" not in ids

        proxy.mend()
        t1 = time.monotonic()
        await wait_until(lambda: _answers(agents), 10, "the agents check to answer again")
        back_s = time.monotonic() - t1
        after = await world.call(("main_menu", "0"), callerid=ALEX)
        assert _sets(after).get("STARPAY_NEXT") == "queue"
        # Events resume on the reconnected link.
        await wait_until(lambda: events.connected, 10, "the event client to reconnect")
        seen.clear()
        result = await admin.originate(AGENT, context="qa-caller", exten="s",
                                       timeout_ms=10000)
        await wait_until(lambda: any(c.startswith(AGENT) for c in seen), 10,
                         "a Newchannel event after the reconnect")
        await admin.action({"Action": "Hangup", "Channel": result.channel})
    finally:
        with contextlib.suppress(Exception):
            await admin.command(f"queue remove member {AGENT} from billing")
        await admin.close()
        await events.close()
        await link.close()
        await proxy.close()
    print(f"AMI cut: agent request answered (no-agent path) in {during_s:.2f} s; "
          f"agents check back {back_s:.2f} s after the link returned")


async def _answers(agents: Any) -> bool:
    try:
        return bool(await agents())
    except Exception:
        return False


def _sets(fake: FakeAsterisk) -> dict[str, str]:
    return {c.arg(0): c.arg(1) for c in fake.transcript if c.verb == "SET VARIABLE"}
