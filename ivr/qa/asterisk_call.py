"""A simulated call through a real Asterisk, with no phone (the Asterisk-testsuite technique).

AMI Originate places ``Local/<exten>@<context>`` with the caller ID we choose; the caller's
side (the ``;1`` half) sits in ``[qa-caller]`` while the ``;2`` half runs our dialplan and
the FastAGI session. ``AGIExecStart`` events (read class ``agi``) show each AGI command the
service sends, so we know which prompt is playing; ``PlayDTMF`` on the ``;1`` half presses keys
as the caller. We set both halves' uniqueids ourselves (ChannelId/OtherChannelId) so events
are matched to this call without guessing from channel names.

Log in with an AMI user that may read ``agi`` and ``dtmf`` (the local instance's QA user):
those classes carry pressed digits, so this module never logs event bodies.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ivr.ami.client import AMIClient
from ivr.ami.errors import AMIError
from ivr.qa.scenario import sound_files

if TYPE_CHECKING:
    from ivr.asterisk.local import LocalAsterisk

# What a simulated call reads: AGIExecStart (agi), Newexten (dialplan), Hangup (call).
QA_EVENTS = "call,dialplan,agi,dtmf"


async def qa_ami(instance: LocalAsterisk, *, events: str = QA_EVENTS,
                 **options: Any) -> AMIClient:
    """A connected AMI client logged in as the instance's QA user, the one user allowed to
    read the agi/dtmf classes (pressed digits): only QA tools log in with it."""
    ami = AMIClient(instance.ami_host, instance.ami_port, instance.qa_username,
                    instance.qa_secret, events=events, **options)
    await ami.connect()
    return ami


@dataclass
class HeardCommand:
    """One AGI command the service sent during the call, as Asterisk reported it."""

    at: float
    command: str
    result: str | None = None
    # Seconds from Asterisk raising the event to us reading it, when the instance stamps
    # its events (timestampevents): how far behind the AMI event stream runs.
    lag: float | None = None

    @property
    def sound(self) -> str | None:
        """The (first) sound file of a STREAM FILE / GET DATA / CONTROL STREAM FILE command
        or of an EXEC Read list."""
        files = self.sounds
        return files[0] if files else None

    @property
    def sounds(self) -> list[str]:
        """Every sound file the command plays, in order (a Read's whole list)."""
        return sound_files(self.command)


@dataclass
class AsteriskCall:
    ami: AMIClient
    caller_id: str = "+15551234567"
    exten: str = "*PAY"
    context: str = "starpay"
    caller_context: str = "qa-caller"
    attest: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    heard: list[HeardCommand] = field(default_factory=list)
    # Prefix of the uniqueids we choose; a driver with many calls filters AMI on it.
    uid_prefix: str = "qa-"
    # False when the driver routes events to on_event itself (one subscription per AMI
    # connection instead of one per call per event, which is quadratic in live calls).
    subscribe: bool = True

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:12]
        self.caller_uid = f"{self.uid_prefix}{tag}-1"  # the ;1 half: the caller's phone
        self.service_uid = f"{self.uid_prefix}{tag}-2"  # the ;2 half: dialplan and AGI
        self.caller_channel: str | None = None
        self.service_channel: str | None = None
        self.ended = asyncio.Event()
        self.hangup_cause: str | None = None
        self.agi_status: str | None = None
        self._new = asyncio.Condition()
        self._started = time.monotonic()
        self._callbacks: list[tuple[str, Any]] = []

    # ---- events ------------------------------------------------------------------------
    async def on_event(self, event: Any) -> None:
        get = event.get
        name = get("Event")
        uid = get("Uniqueid")
        if name == "Newchannel" and uid == self.caller_uid:
            self.caller_channel = get("Channel")
        elif name == "Newchannel" and uid == self.service_uid:
            self.service_channel = get("Channel")
        elif name == "AGIExecStart" and uid == self.service_uid:
            stamp = get("Timestamp")
            lag = time.time() - float(stamp) if stamp else None
            async with self._new:
                self.heard.append(HeardCommand(time.monotonic() - self._started,
                                               get("Command") or "", lag=lag))
                self._new.notify_all()
        elif name == "AGIExecEnd" and uid == self.service_uid and self.heard:
            self.heard[-1].result = get("Result")
        elif name == "Hangup" and uid in (self.caller_uid, self.service_uid):
            self.hangup_cause = get("Cause-txt") or get("Cause")
            self.ended.set()
            async with self._new:
                self._new.notify_all()

    # ---- driving -----------------------------------------------------------------------
    async def start(self, timeout_ms: int = 15000) -> None:
        if self.subscribe:
            for name in ("Newchannel", "AGIExecStart", "AGIExecEnd", "Hangup"):
                self.ami.on(name, self.on_event)
                self._callbacks.append((name, self.on_event))
        variables = dict(self.variables)
        if self.attest:
            variables["__STARPAY_ATTEST"] = self.attest
        self._started = time.monotonic()
        result = await self.ami.originate(
            f"Local/{self.exten}@{self.context}", context=self.caller_context, exten="s",
            priority=1, caller_id=f'"QA" <{self.caller_id}>', variables=variables or None,
            timeout_ms=timeout_ms,
            extra={"ChannelId": self.caller_uid, "OtherChannelId": self.service_uid})
        if result.response != "Success":
            raise RuntimeError(f"originate failed: {result.reason_text}")

    async def wait_for(self, pattern: str, timeout: float = 15.0,
                       start: int = 0) -> HeardCommand:
        """Wait until the service sends an AGI command matching ``pattern`` (a regex,
        case-insensitive), searching from ``heard[start]``; return it."""
        rx = re.compile(pattern, re.I)

        def found() -> HeardCommand | None:
            return next((h for h in self.heard[start:] if rx.search(h.command)), None)

        async with self._new:
            try:
                await asyncio.wait_for(
                    self._new.wait_for(lambda: found() is not None or self.ended.is_set()),
                    timeout)
            except TimeoutError:
                pass
            hit = found()
        if hit is None:
            said = "; ".join(h.command for h in self.heard[-5:]) or "nothing"
            raise AssertionError(f"no AGI command matching {pattern!r} within {timeout} s; "
                                 f"last heard: {said}")
        return hit

    async def press(self, digits: str, gap: float = 0.3, duration_ms: int = 120, *,
                    as_received: bool = False) -> None:
        """Press keys as the caller, ``gap`` seconds apart.

        By default each key is played out of the caller's channel and crosses the Local
        channel pair, as from a phone; Asterisk holds the AMI session while it plays, so
        many calls' keys on one connection wait for each other. ``as_received`` queues
        each key on the service channel as arriving DTMF instead (what the Local pair
        does at its far end), without that wait: for load generators."""
        channel = self.service_channel if as_received else self.caller_channel
        if not channel:
            raise RuntimeError("the call's channel is not known yet")
        for d in digits:
            await self.ami.play_dtmf(channel, d, duration_ms, receive=as_received)
            await asyncio.sleep(gap)

    async def hangup(self) -> None:
        if self.caller_channel and not self.ended.is_set():
            await self.ami.action({"Action": "Hangup", "Channel": self.caller_channel})

    async def wait_end(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)

    async def close(self) -> None:
        """Hang up (if the call is still up) and stop listening; safe to call twice."""
        try:
            await self.hangup()
        except AMIError:
            # The channel went away between our check and the Hangup action: it is gone,
            # which is all we wanted.
            self.ended.set()
        for name, cb in self._callbacks:
            off = getattr(self.ami, "off", None)
            if off:
                off(name, cb)
        self._callbacks.clear()
