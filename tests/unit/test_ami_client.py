"""AMIClient against a small fake AMI server speaking the wire protocol over real TCP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ivr.ami import AMIActionError, AMIClient, AMIConnectionError, AMILoginError
from ivr.ami.errors import AMITimeoutError
from ivr.ami.events import DTMFEnd, Hangup, parse

USER, SECRET = "starpay", "right-secret"


@dataclass
class Plan:
    """How the fake answers an Originate for one channel."""

    delay: float
    response: str = "Success"
    reason: int = 4
    uniqueid: str = "1700000000.1"
    error: str = ""  # non-empty: answer Response: Error with this message
    event_first: bool = False  # send the OriginateResponse before the ack


def _wire(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


def _parse(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in raw.decode().split("\r\n"):
        key, _, value = line.partition(": ")
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


class FakeAMI:
    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.Server | None = None
        self.sessions: set[asyncio.StreamWriter] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.received: list[dict[str, Any]] = []
        self.logins = 0
        self.ping_mode = "pong"  # pong | no-pong | silent
        self.plans: dict[str, Plan] = {}
        self.queues: list[dict[str, str]] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def drop(self) -> None:
        """Asterisk goes away: the listener closes and every connection is cut."""
        assert self.server
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()
        self.sessions.clear()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=2)

    def broadcast(self, *headers: tuple[str, str]) -> None:
        for w in list(self.sessions):
            w.write(_wire(list(headers)))

    def actions(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.received if a.get("Action") == name]

    async def close(self) -> None:
        if self.server:
            self.server.close()
        for w in list(self.writers):
            w.close()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.writers.add(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        buf = b""
        try:
            while data := await reader.read(4096):
                buf += data
                while b"\r\n\r\n" in buf:
                    raw, buf = buf.split(b"\r\n\r\n", 1)
                    msg = _parse(raw)
                    self.received.append(msg)
                    await self._handle(msg, writer)
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            self.sessions.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle(self, msg: dict[str, Any], w: asyncio.StreamWriter) -> None:
        name, aid = msg.get("Action"), ("ActionID", msg.get("ActionID", ""))
        if name == "Login":
            if msg.get("Username") == USER and msg.get("Secret") == SECRET:
                self.logins += 1
                self.sessions.add(w)
                w.write(_wire([("Response", "Success"), aid,
                               ("Message", "Authentication accepted")]))
            else:
                w.write(_wire([("Response", "Error"), aid,
                               ("Message", "Authentication failed")]))
                await w.drain()
                w.close()
        elif name == "Ping":
            if self.ping_mode == "pong":
                w.write(_wire([("Response", "Success"), aid, ("Ping", "Pong"),
                               ("Timestamp", "1700000000.000000")]))
            elif self.ping_mode == "no-pong":
                w.write(_wire([("Response", "Success"), aid]))
        elif name == "Originate":
            self._originate(msg, w, aid)
        elif name == "QueueSummary":
            w.write(_wire([("Response", "Success"), aid, ("EventList", "start"),
                           ("Message", "Queue summary will follow")]))
            for q in self.queues:
                w.write(_wire([("Event", "QueueSummary"), *q.items(), aid]))
                # Another call's event, no ActionID, arrives mid-list as it can on a PBX.
                self.broadcast(("Event", "Newchannel"), ("Channel", "PJSIP/x-1"))
            w.write(_wire([("Event", "QueueSummaryComplete"), aid, ("EventList", "Complete"),
                           ("ListItems", str(len(self.queues)))]))
        elif name == "Command":
            w.write(_wire([("Response", "Success"), aid, ("Message", "Command output follows"),
                           ("Output", "Asterisk 22.0.0 built by fake"),
                           ("Output", "second line")]))
        elif name == "MessageSend":
            w.write(_wire([("Response", "Success"), aid, ("Message", "Message successfully sent")]))
        elif name == "Slow":
            pass  # never answered: used to see what happens to in-flight actions on a drop
        else:
            w.write(_wire([("Response", "Error"), aid, ("Message", "Invalid/unknown command")]))

    def _originate(self, msg: dict[str, Any], w: asyncio.StreamWriter,
                   aid: tuple[str, str]) -> None:
        plan = self.plans[msg["Channel"]]
        if plan.error:
            w.write(_wire([("Response", "Error"), aid, ("Message", plan.error)]))
            return
        event = [("Event", "OriginateResponse"), ("Privilege", "call,all"), aid,
                 ("Response", plan.response), ("Channel", msg["Channel"]),
                 ("Context", msg.get("Context", "")), ("Exten", msg.get("Exten", "")),
                 ("Reason", str(plan.reason)), ("Uniqueid", plan.uniqueid),
                 ("CallerIDNum", "<unknown>"), ("CallerIDName", "<unknown>")]
        ack = _wire([("Response", "Success"), aid, ("Message", "Originate successfully queued")])
        if plan.event_first:
            self.broadcast(*event)
            w.write(ack)
            return
        w.write(ack)

        async def later() -> None:
            await asyncio.sleep(plan.delay)
            self.broadcast(*event)  # like Asterisk: every session with the call class sees it
        asyncio.get_running_loop().create_task(later())


@pytest.fixture
async def ami() -> AsyncIterator[FakeAMI]:
    fake = FakeAMI()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_client(ami: FakeAMI) -> AsyncIterator[Callable[..., AMIClient]]:
    made: list[AMIClient] = []

    def make(secret: str = SECRET, **kw: Any) -> AMIClient:
        kw.setdefault("keepalive_interval", None)
        c = AMIClient("127.0.0.1", ami.port, USER, secret, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        await c.close()


async def test_bad_login_raises_login_error_that_says_what_to_check(ami, make_client):
    client = make_client(secret="wrong")
    with pytest.raises(AMILoginError) as err:
        await client.connect(timeout=2)
    text = str(err.value)
    assert "Authentication failed" in text and "'starpay'" in text
    assert "ami.secret" in text and "manager.conf" in text
    assert "wrong" not in text  # never echo the secret
    assert not client.connected


async def test_unreachable_port_raises_connection_error(ami, make_client):
    await ami.drop()
    client = make_client()
    with pytest.raises(AMIConnectionError, match="cannot reach"):
        await client.connect(timeout=2)


async def test_server_that_never_answers_login_raises_connection_error():
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AMIClient("127.0.0.1", port, USER, SECRET, keepalive_interval=None)
    try:
        with pytest.raises(AMIConnectionError, match="no AMI login reply"):
            await client.connect(timeout=0.3)
    finally:
        await client.close()
        server.close()
        for w in accepted:
            w.close()
            await w.wait_closed()


async def test_two_originates_in_flight_each_get_their_own_response(ami, make_client):
    ami.plans["Local/slow@t"] = Plan(delay=0.3, reason=4, uniqueid="111.1")
    ami.plans["Local/fast@t"] = Plan(delay=0.05, response="Failure", reason=5,
                                     uniqueid="<null>")
    client = make_client()
    await client.connect()
    seen: list[str] = []
    client.on("OriginateResponse", lambda e: seen.append(e["ActionID"]))
    # Another session's originate: same event, foreign ActionID; must not be taken as ours.
    foreign = [("Event", "OriginateResponse"), ("ActionID", "someone-else"),
               ("Response", "Success"), ("Channel", "Local/slow@t"), ("Reason", "4"),
               ("Uniqueid", "999.9")]
    ami.broadcast(*foreign)

    slow, fast = await asyncio.gather(
        client.originate("Local/slow@t", context="qa", exten="s"),
        client.originate("Local/fast@t", context="qa", exten="s", timeout_ms=5000))

    assert (slow.response, slow.reason, slow.uniqueid, slow.channel) == (
        "Success", 4, "111.1", "Local/slow@t")
    assert slow.success and slow.reason_text == "answered"
    assert (fast.response, fast.reason, fast.uniqueid) == ("Failure", 5, None)
    assert not fast.success and fast.reason_text == "busy"
    sent = ami.actions("Originate")
    assert [a["Async"] for a in sent] == ["true", "true"]
    assert len({a["ActionID"] for a in sent}) == 2
    assert {slow.action_id, fast.action_id} == {a["ActionID"] for a in sent}
    # The OriginateResponse events reach callbacks too (panoramisk swallows them).
    assert set(seen) == {"someone-else", slow.action_id, fast.action_id}


async def test_originate_event_arriving_before_the_ack_is_still_the_result(ami, make_client):
    ami.plans["Local/x@t"] = Plan(delay=0, response="Failure", reason=0, event_first=True)
    client = make_client()
    await client.connect()
    seen: list[dict] = []
    client.on("OriginateResponse", seen.append)
    result = await client.originate("Local/x@t", application="Wait", data="1",
                                    timeout_ms=1000)
    assert (result.response, result.reason) == ("Failure", 0)
    assert [e["ActionID"] for e in seen] == [result.action_id]
    assert await client.ping()  # the late ack did not confuse the stream


async def test_originate_fails_fast_when_the_link_drops_before_its_response(ami, make_client):
    ami.plans["Local/long@t"] = Plan(delay=30)
    client = make_client(reconnect_min_delay=5)
    await client.connect()
    call = asyncio.ensure_future(client.originate("Local/long@t", context="qa", exten="s"))
    await asyncio.sleep(0.2)  # sent and acknowledged; the event is 30 s away
    assert ami.actions("Originate") and not call.done()
    await ami.drop()
    async with asyncio.timeout(2):
        with pytest.raises(AMIConnectionError, match="may or may not have been placed"):
            await call


async def test_generic_originate_without_async_does_not_break_the_link(ami, make_client):
    ami.plans["Local/v@t"] = Plan(delay=0)
    client = make_client()
    await client.connect()
    reply = await client.action({"Action": "Originate", "Channel": "Local/v@t",
                                 "Context": "qa", "Exten": "s", "Priority": "1"})
    assert isinstance(reply, dict) and reply["Response"] == "Success"
    assert client.connected and await client.ping()


async def test_originate_refused_raises_action_error(ami, make_client):
    ami.plans["Bogus/x"] = Plan(delay=0, error="Originate failed")
    client = make_client()
    await client.connect()
    with pytest.raises(AMIActionError, match="Originate failed") as err:
        await client.originate("Bogus/x", context="qa", exten="s")
    assert err.value.action == "Originate"


async def test_originate_sends_variables_account_and_callerid(ami, make_client):
    ami.plans["Local/v@t"] = Plan(delay=0)
    client = make_client()
    await client.connect()
    await client.originate("Local/v@t", context="qa", exten="s", priority=2,
                           caller_id='"Test" <+15551234567>', account="acct-7",
                           variables={"A": "1", "B": "two"})
    sent = ami.actions("Originate")[0]
    assert sent["Variable"] == ["A=1", "B=two"]
    assert (sent["Account"], sent["Priority"], sent["Timeout"]) == ("acct-7", "2", "30000")
    assert sent["CallerID"] == '"Test" <+15551234567>'
    await client.originate("Local/v@t", context="qa", exten="s",
                           extra={"ChannelId": "caller-1", "OtherChannelId": "service-1"})
    sent = ami.actions("Originate")[1]
    assert (sent["ChannelId"], sent["OtherChannelId"], sent["Async"]) == (
        "caller-1", "service-1", "true")
    with pytest.raises(ValueError, match="Async"):
        await client.originate("Local/v@t", context="qa", exten="s", extra={"Async": "false"})


async def test_line_breaks_in_values_are_refused_before_sending(ami, make_client):
    client = make_client()
    await client.connect()
    with pytest.raises(ValueError, match="line break"):
        await client.originate("Local/v@t", context="qa", exten="s",
                               caller_id="x\r\nAction: Command")
    assert ami.actions("Originate") == []


async def test_queue_summary_collects_until_complete(ami, make_client):
    ami.queues = [
        {"Queue": "billing", "LoggedIn": "3", "Available": "1", "Callers": "2",
         "HoldTime": "12", "TalkTime": "95", "LongestHoldTime": "40"},
        {"Queue": "support", "LoggedIn": "0", "Available": "0", "Callers": "0",
         "HoldTime": "0", "TalkTime": "0", "LongestHoldTime": "0"},
    ]
    client = make_client()
    await client.connect()
    others: list[dict] = []
    client.on("Newchannel", others.append)
    summary = await client.queue_summary()
    assert [q.queue for q in summary] == ["billing", "support"]
    b = summary[0]
    assert (b.logged_in, b.available, b.callers) == (3, 1, 2)
    assert (b.hold_time, b.talk_time, b.longest_hold_time) == (12.0, 95.0, 40.0)
    await asyncio.sleep(0.05)
    assert len(others) == 2  # interleaved events without our ActionID still dispatched


async def test_reconnects_after_a_drop_and_events_resume(ami, make_client):
    client = make_client(reconnect_min_delay=0.05, reconnect_max_delay=0.2)
    await client.connect()
    got: list[str] = []
    client.on("UserEvent", lambda e: got.append(e["Marker"]))
    disconnected = client.wait_for("Disconnected", timeout=5)
    ami.broadcast(("Event", "UserEvent"), ("Marker", "before"))
    await asyncio.sleep(0.05)
    in_flight = asyncio.ensure_future(client.action({"Action": "Slow"}))
    await asyncio.sleep(0.05)

    await ami.drop()
    await disconnected
    with pytest.raises(AMIConnectionError):
        await in_flight  # failed at once, not parked for replay
    assert not client.connected
    assert not await client.ping()
    await asyncio.sleep(0.5)  # a few refused attempts while "Asterisk" is down
    reconnected = client.wait_for("Reconnected", timeout=5)
    await ami.start()  # same port
    await reconnected
    assert client.connected and client.reconnects == 1 and ami.logins == 2
    ami.broadcast(("Event", "UserEvent"), ("Marker", "after"))
    await client.wait_for("UserEvent", timeout=2)
    assert got == ["before", "after"]
    assert len(ami.actions("Slow")) == 1  # never replayed after the reconnect


async def test_keepalive_drops_a_link_that_stops_answering_and_reconnects(ami, make_client):
    client = make_client(keepalive_interval=0.2, reconnect_min_delay=0.05)
    await client.connect()
    reconnected = client.wait_for("Reconnected", timeout=5)
    ami.ping_mode = "silent"
    await asyncio.sleep(0.3)
    ami.ping_mode = "pong"
    await reconnected
    assert client.connected and ami.logins == 2


async def test_ping_checks_the_pong(ami, make_client):
    client = make_client()
    await client.connect()
    assert await client.ping() is True
    ami.ping_mode = "no-pong"
    assert await client.ping() is False
    ami.ping_mode = "silent"
    assert await client.ping(timeout_s=0.2) is False


async def test_a_failing_callback_does_not_break_the_link(ami, make_client):
    client = make_client()
    await client.connect()

    def broken(event: dict) -> None:
        raise RuntimeError("bug in a consumer")

    async def broken_async(event: dict) -> None:
        raise RuntimeError("bug in an async consumer")

    got: list[dict] = []
    client.on("UserEvent", broken)
    client.on("UserEvent", broken_async)
    client.on("UserEvent", got.append)
    ami.broadcast(("Event", "UserEvent"), ("Marker", "1"))
    await client.wait_for("UserEvent", timeout=2)
    await asyncio.sleep(0.05)
    assert got and client.connected and await client.ping()


async def test_off_unsubscribes(ami, make_client):
    client = make_client()
    await client.connect()
    got: list[dict] = []
    unsubscribe = client.on("User*", got.append)
    ami.broadcast(("Event", "UserEvent"), ("Marker", "1"))
    await client.wait_for("UserEvent", timeout=2)
    unsubscribe()
    ami.broadcast(("Event", "UserEvent"), ("Marker", "2"))
    await client.wait_for("UserEvent", timeout=2)
    assert [e["Marker"] for e in got] == ["1"]


async def test_subscribing_again_after_the_last_unsubscribe_delivers_each_event_once(
        ami, make_client):
    """The last `off` of an event name, then `on` again (one simulated call after another),
    must not leave the name listed twice: each prompt was heard twice by the next call."""
    client = make_client()
    await client.connect()
    first: list[dict] = []
    client.on("UserEvent", first.append)
    client.off("UserEvent", first.append)
    again: list[dict] = []
    client.on("UserEvent", again.append)
    ami.broadcast(("Event", "UserEvent"), ("Marker", "1"))
    await client.wait_for("UserEvent", timeout=2)
    await asyncio.sleep(0.05)
    assert [e["Marker"] for e in again] == ["1"] and first == []


async def test_wait_for_times_out(ami, make_client):
    client = make_client()
    await client.connect()
    with pytest.raises(AMITimeoutError):
        await client.wait_for("Hangup", timeout=0.1)
    with pytest.raises(TimeoutError):  # AMITimeoutError is a TimeoutError too
        await client.wait_for("Hangup", timeout=0.1)


async def test_command_returns_output_and_unknown_action_raises(ami, make_client):
    client = make_client()
    await client.connect()
    assert await client.command("core show version") == (
        "Asterisk 22.0.0 built by fake\nsecond line")
    with pytest.raises(AMIActionError, match="Invalid/unknown command"):
        await client.action({"Action": "NoSuchThing"})


async def test_message_send_multiline_body_goes_base64(ami, make_client):
    client = make_client()
    await client.connect()
    await client.message_send("pjsip:alice", "sip:starpay", "line one\nline two")
    sent = ami.actions("MessageSend")[0]
    assert "Body" not in sent
    assert base64.b64decode(sent["Base64Body"]).decode() == "line one\nline two"


async def test_play_dtmf_refuses_non_keys(ami, make_client):
    client = make_client()
    await client.connect()
    with pytest.raises(ValueError):
        await client.play_dtmf("Local/x;1", "55")
    assert ami.actions("PlayDTMF") == []


async def test_digits_in_events_never_reach_the_log(ami, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="panoramisk")
    client = make_client()
    await client.connect()
    ami.broadcast(("Event", "AGIExecEnd"), ("Channel", "Local/a;2"),
                  ("Command", "GET DATA beep 5000 10"), ("ResultCode", "200"),
                  ("Result", "200 result=4111222233"))
    ami.broadcast(("Event", "DTMFEnd"), ("Channel", "Local/a;2"), ("Digit", "7"),
                  ("DurationMs", "120"), ("Direction", "Received"))
    ami.broadcast(("Event", "UserEvent"), ("Account", "98765432"))
    await client.wait_for("UserEvent", timeout=2)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "AGIExecEnd" in text  # logged, by name
    assert "4111222233" not in text and "98765432" not in text
    assert "'Digit': '7'" not in text


def test_typed_views():
    hangup = parse({"Event": "Hangup", "Channel": "PJSIP/a-1", "Uniqueid": "1.2",
                    "Cause": "17", "Cause-txt": "User busy"})
    assert hangup == Hangup(channel="PJSIP/a-1", uniqueid="1.2", cause=17,
                            cause_txt="User busy")
    dtmf = parse({"event": "DTMFEnd", "channel": "L/a", "uniqueid": "1", "digit": "9",
                  "durationms": "100", "direction": "Received"})
    assert isinstance(dtmf, DTMFEnd) and dtmf.digit == "9" and dtmf.duration_ms == 100
    assert "9" not in repr(dtmf).replace("DTMFEnd", "")
    assert parse({"Event": "VarSet"}) is None
