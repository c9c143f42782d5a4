"""AMI client on top of panoramisk, with the parts it gets wrong replaced.

What is panoramisk's and what is ours (see the notes in asterisk.md for its defects):

- panoramisk: the wire framing and parsing (``AMIProtocol.data_received``, ``Message``),
  ``Action`` objects with their ActionID correlation of replies and list replies
  (``EventList: start`` ... ``*Complete``), and ``Manager``'s event pattern registry and
  ``dispatch``.
- ours: connecting and logging in (``Manager.connect`` retries forever and a refused login
  is silent), reconnecting (``Manager`` retries at a fixed delay and *replays* unanswered
  actions after reconnecting, which could place an Originate twice), keep-alive (its ping
  never reads the pong), Originate (always ``Async``, its own ActionID, and the
  OriginateResponse reaches event callbacks too) and callback isolation (an exception in a
  callback would otherwise tear the connection down from inside ``data_received``).

Security: the dtmf and agi event classes carry the digits callers press. We never log the
bodies of those events, and panoramisk's own debug log goes through a digit-masking adapter.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import fnmatch
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from ivr.ami.errors import (
    AMIActionError,
    AMIConnectionError,
    AMIError,
    AMILoginError,
    AMITimeoutError,
)
from ivr.ami.events import OriginateResult, QueueSummary, header
from ivr.log import mask_digits

if TYPE_CHECKING:
    from ivr.config import AmiConfig

log = logging.getLogger(__name__)

# Actions answered by one Response that panoramisk would wait on as a list.
SINGLE_REPLY = frozenset({"originate", "queueadd", "queueremove", "queuepause"})

Event = dict[str, Any]
Callback = Callable[[Event], Awaitable[None] | None]

DEFAULT_EVENTS = "call,agent,system,user"
# Events whose bodies carry keypad input (digits, AGI commands and results).
_SENSITIVE_PREFIXES = ("dtmf", "agiexec", "asyncagi")
_DTMF_KEYS = frozenset("0123456789*#ABCDabcd")


def _is_sensitive(name: str, event: Mapping[str, Any]) -> bool:
    low = name.lower()
    return low.startswith(_SENSITIVE_PREFIXES) or any(k.lower() == "digit" for k in event)


# What panoramisk says about the link itself (Asterisk's AMI version): no caller's input.
_UNMASKED_FORMATS = frozenset({"protocol version: '%s'"})


class _MaskedLog(logging.LoggerAdapter[logging.Logger]):
    """panoramisk logs every parsed message at DEBUG, DTMF digits included: mask them."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if msg in _UNMASKED_FORMATS:
            self.logger.log(level, msg, *args, **kwargs)
        elif self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", mask_digits(text), **kwargs)


_PANORAMISK_LOG = _MaskedLog(logging.getLogger("panoramisk"), {})


class _Protocol(AMIProtocol):
    """panoramisk's protocol, changed where it is wrong for us.

    - ``close`` fails the futures of unanswered actions with AMIConnectionError instead of
      queueing them to be replayed after a reconnect (a replayed Originate dials twice, and
      the caller would wait forever on an action that may already have run).
    - ``connection_lost`` reports to the client, which owns reconnecting.
    - ``data_received`` decodes incrementally: panoramisk decodes each TCP chunk on its own
      and drops a UTF-8 character split across two chunks (e.g. in a caller name).
    """

    closed: bool  # set by panoramisk's connection_made

    def __init__(self, manager: Manager, on_lost: Callable[[_Protocol, object], None]) -> None:
        super().__init__()
        self._manager = manager
        self._on_lost = on_lost
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Wired here, not after create_connection returns, so no byte arrives before it.
        self.factory = self._manager
        self.log = _PANORAMISK_LOG
        self.encoding = "utf-8"
        self.config = self._manager.config

    def data_received(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            super().data_received(text.encode("utf-8"))

    def close(self) -> None:
        pending = list(self.responses.values())
        self.responses.clear()
        for action in pending:
            if not action.future.done():
                action.future.set_exception(AMIConnectionError(
                    f"AMI connection closed before Asterisk answered {action['action']}"))
        if not self.closed:
            try:
                self.transport.close()
            finally:
                self.closed = True

    def handle_message(self, message: Message) -> None:
        # An exception here would escape data_received and asyncio would drop the link
        # (panoramisk's Action.multi raises KeyError on some replies): contain it.
        try:
            super().handle_message(message)
        except Exception:
            log.exception("AMI: could not handle a %s message",
                          header(message, "Event") or header(message, "Response") or "?")

    def connection_lost(self, exc: object) -> None:
        # Also called by panoramisk itself when Asterisk sends a Shutdown event.
        if self.closed:
            return
        self.close()
        self._on_lost(self, exc)


def _action(fields: Mapping[str, Any]) -> Action:
    """A panoramisk Action, refusing CR/LF in names and values (they would inject headers)."""
    clean: dict[str, Any] = {}
    for key, value in fields.items():
        values = value if isinstance(value, list | tuple) else [value]
        strs = [str(v) for v in values]
        if any(c in s for s in [key, *strs] for c in "\r\n"):
            raise ValueError(f"AMI header {key!r} must not contain a line break")
        clean[key] = strs if isinstance(value, list | tuple) else strs[0]
    if "action" not in {k.lower() for k in clean}:
        raise ValueError("an AMI action needs an 'Action' field")
    return Action(clean)


def _as_dict(message: Message) -> Event:
    """A plain dict copy of a panoramisk Message (converted once per message)."""
    cached = message.__dict__.get("_starpay_dict")  # not getattr: Message answers '' for any
    if cached is None:
        cached = dict(message.items())
        message.__dict__["_starpay_dict"] = cached
    return dict(cached)


class AMIClient:
    """One logged-in AMI session that survives Asterisk restarts.

    ``on()`` callbacks (sync or async) get each event as a dict and keep getting events after
    a reconnect. Two synthetic events tell callers about the link: ``Disconnected`` and
    ``Reconnected``; ``connected_event`` is set while logged in.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5038, username: str = "starpay",
                 secret: str = "", *, events: str = DEFAULT_EVENTS,
                 reconnect_max_delay: float = 30.0, reconnect_min_delay: float = 0.5,
                 action_timeout: float = 10.0, keepalive_interval: float | None = 20.0) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.events = events
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnect_min_delay = reconnect_min_delay
        self.action_timeout = action_timeout
        self.keepalive_interval = keepalive_interval
        self.reconnects = 0  # successful reconnects so far
        self.connected_event = asyncio.Event()
        self._manager = Manager(host=host, port=port, events=events, log=_PANORAMISK_LOG)
        # Manager replays queued actions on FullyBooted; we never queue any (see _Protocol).
        self._manager.callbacks.pop("FullyBooted", None)
        self._manager.patterns = [p for p in self._manager.patterns if p[0] != "FullyBooted"]
        self._manager.register_event("*", self._on_any_event)
        self._protocol: _Protocol | None = None
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: list[tuple[str, Callable[[Event], bool] | None,
                                  asyncio.Future[Event]]] = []
        self._wrappers: dict[tuple[str, Callback], Callable[[Manager, Message], None]] = {}

    @classmethod
    def from_config(cls, cfg: AmiConfig, **kwargs: Any) -> AMIClient:
        return cls(cfg.host, cfg.port, cfg.username, cfg.secret,
                   reconnect_max_delay=cfg.reconnect_max_delay, **kwargs)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._protocol is not None and not self._protocol.closed

    # ---- connection life cycle ---------------------------------------------------------
    async def connect(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (the API)
        """Connect and log in; raises AMILoginError or AMIConnectionError."""
        if self.connected:
            return
        self._closing = False
        if self._reconnect_task and not self._reconnect_task.done():
            await self.wait_connected(timeout)
            return
        await self._open(timeout)
        if self.keepalive_interval and (self._keepalive_task is None
                                        or self._keepalive_task.done()):
            self._keepalive_task = asyncio.get_running_loop().create_task(self._keepalive())

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.connected_event.wait()
        except TimeoutError:
            raise AMIConnectionError(f"not connected to Asterisk's AMI at {self.where} "
                                     f"after {timeout_s:g} s") from None

    async def close(self) -> None:
        self._closing = True
        for task in (self._reconnect_task, self._keepalive_task):
            if task and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reconnect_task = self._keepalive_task = None
        proto, self._protocol = self._protocol, None
        self.connected_event.clear()
        if proto is not None:
            proto.close()
        for _, _, fut in list(self._waiters):
            if not fut.done():
                fut.set_exception(AMIConnectionError("AMI client closed"))
                fut.exception()  # mark retrieved: nobody may be awaiting it any more

    async def _open(self, within: float) -> None:
        loop = asyncio.get_running_loop()
        self._manager.loop = loop
        deadline = loop.time() + within
        try:
            async with asyncio.timeout(within):
                _, proto = await loop.create_connection(
                    lambda: _Protocol(self._manager, self._lost), self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise AMIConnectionError(
                f"cannot reach Asterisk's AMI at {self.where} ({exc or 'timed out'}): is "
                "Asterisk running, with manager.conf enabled on this address and port?"
            ) from exc
        assert isinstance(proto, _Protocol)
        login = _action({"Action": "Login", "Username": self.username,
                         "Secret": self._secret, "Events": self.events})
        try:
            reply = await asyncio.wait_for(proto.send(login, as_list=False),
                                           max(0.1, deadline - loop.time()))
        except TimeoutError:
            proto.close()
            raise AMIConnectionError(
                f"{self.where} accepted the connection but sent no AMI login reply within "
                f"{within:g} s: is that Asterisk's AMI port (manager.conf port=)?") from None
        except AMIConnectionError:
            raise AMIConnectionError(f"{self.where} closed the connection during the AMI "
                                     "login: check manager.conf's permit=/deny= and "
                                     "authlimit") from None
        if header(reply, "Response") != "Success":
            proto.close()
            hint = " (the secret is empty)" if not self._secret else ""
            raise AMILoginError(
                f"Asterisk at {self.where} refused the AMI login for user {self.username!r}"
                f"{hint}: {header(reply, 'Message') or 'no reason given'}. Check that "
                "ami.username and ami.secret (STARPAY_AMI_USERNAME, STARPAY_AMI_SECRET) match "
                f"a [{self.username}] section of manager.conf and that its permit= lines "
                "allow this host.")
        self._protocol = proto
        self._manager.protocol = proto
        self.connected_event.set()
        log.info("AMI logged in to %s as %s (Asterisk Call Manager/%s)", self.where,
                 self.username, proto.version or "?")

    def _lost(self, proto: _Protocol, exc: object) -> None:
        if proto is not self._protocol:
            return  # a connection we already replaced or gave up on
        self._protocol = None
        self.connected_event.clear()
        if self._closing:
            return
        why = "Asterisk shut down" if isinstance(exc, Message) else (exc or "closed by peer")
        log.warning("AMI connection to %s lost (%s); reconnecting", self.where, why)
        self._emit("Disconnected")
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self.reconnect_min_delay
        attempts = 0
        while not self._closing:
            await asyncio.sleep(delay)
            attempts += 1
            try:
                await self._open(within=10.0)
            except AMILoginError as exc:
                # Loud: credentials changed under us; keep trying in case they are fixed.
                log.error("AMI reconnect: %s", exc)
            except AMIConnectionError as exc:
                log.info("AMI reconnect attempt %d failed: %s", attempts, exc)
            else:
                self.reconnects += 1
                log.info("AMI reconnected to %s after %d attempt(s)", self.where, attempts)
                self._emit("Reconnected", Attempts=str(attempts))
                return
            delay = min(delay * 2, self.reconnect_max_delay)

    async def _keepalive(self) -> None:
        # Detects a half-open link (Asterisk frozen, a NAT dropped us): no pong, reconnect.
        assert self.keepalive_interval
        while not self._closing:
            await asyncio.sleep(self.keepalive_interval)
            proto = self._protocol
            if proto is None or await self.ping(self.keepalive_interval):
                continue
            if proto is self._protocol and not proto.closed:
                log.warning("AMI at %s did not answer a ping; dropping the link", self.where)
                proto.transport.abort()  # connection_lost follows, then _reconnect

    # ---- events ------------------------------------------------------------------------
    def on(self, event_name: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for each event named ``event_name`` (glob; ``*`` = all).

        Names are matched as Asterisk spells them (``Hangup``, ``QueueCallerJoin``).
        Returns a function that unsubscribes.
        """
        key = (event_name, callback)
        if key in self._wrappers:
            return lambda: self.off(event_name, callback)

        def wrapper(_manager: Manager, message: Message) -> None:
            self._call(callback, message)

        self._wrappers[key] = wrapper
        self._manager.register_event(event_name, wrapper)
        return lambda: self.off(event_name, callback)

    def off(self, event_name: str, callback: Callback) -> None:
        wrapper = self._wrappers.pop((event_name, callback), None)
        if wrapper is not None:
            # A new list, not in-place removal: dispatch may be iterating the old one.
            callbacks = self._manager.callbacks
            callbacks[event_name] = [c for c in callbacks[event_name] if c is not wrapper]
            if not callbacks[event_name]:
                # panoramisk adds the pattern again on the next register_event of an empty
                # list; left in place, every event would then reach each callback twice.
                self._manager.patterns = [p for p in self._manager.patterns
                                          if p[0] != event_name]

    def wait_for(self, event_name: str, predicate: Callable[[Event], bool] | None = None,
                 timeout: float | None = 30.0) -> asyncio.Future[Event]:
        """A future for the next matching event; raises AMITimeoutError after ``timeout``.

        Registered at call time, so ``w = client.wait_for(...)`` before an action cannot miss
        the event the action causes; ``await`` it afterwards.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Event] = loop.create_future()
        waiter = (event_name, predicate, fut)
        self._waiters.append(waiter)
        timer = None
        if timeout is not None:
            def expire() -> None:
                if not fut.done():
                    fut.set_exception(AMITimeoutError(
                        f"no {event_name} event within {timeout:g} s"))
            timer = loop.call_later(timeout, expire)

        def done(_: asyncio.Future[Event]) -> None:
            if timer:
                timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        fut.add_done_callback(done)
        return fut

    def _on_any_event(self, _manager: Manager, message: Message) -> None:
        name = header(message, "Event")
        if log.isEnabledFor(logging.DEBUG):
            if _is_sensitive(name, message):
                log.debug("AMI event %s (body not logged)", name)
            else:
                log.debug("AMI event %s", mask_digits(repr(dict(message.items()))))
        for pattern, predicate, fut in list(self._waiters):
            if fut.done() or not fnmatch.fnmatchcase(name, pattern):
                continue
            try:
                if predicate is None or predicate(_as_dict(message)):
                    fut.set_result(_as_dict(message))
            except Exception as exc:  # a broken predicate fails its own waiter only
                fut.set_exception(exc)

    def _call(self, callback: Callback, message: Message) -> None:
        name = header(message, "Event")
        try:
            result = callback(_as_dict(message))
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(lambda t: self._task_done(t, callback, name))
        except Exception:
            # Raised inside data_received it would drop the AMI link: log and go on.
            log.exception("AMI callback %r failed on a %s event", callback, name)

    def _task_done(self, task: asyncio.Task[Any], callback: Callback, name: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AMI callback %r failed on a %s event", callback, name,
                      exc_info=task.exception())

    def _emit(self, name: str, **fields: str) -> None:
        self._manager.dispatch(Message({"Event": name, "Host": self.where, **fields}))

    # ---- actions -----------------------------------------------------------------------
    @overload
    async def _send(self, fields: Mapping[str, Any], *, as_list: Literal[False],
                    timeout_s: float | None = None) -> Message: ...

    @overload
    async def _send(self, fields: Mapping[str, Any], *, as_list: bool | None = None,
                    timeout_s: float | None = None) -> Message | list[Message]: ...

    async def _send(self, fields: Mapping[str, Any], *, as_list: bool | None = None,
                    timeout_s: float | None = None) -> Message | list[Message]:
        act = _action(fields)
        name = act["action"]
        if as_list is None and name.lower() in SINGLE_REPLY:
            # panoramisk's list heuristics misread these: Originate's reads act['async'] and
            # raises KeyError without it; QueueAdd's "Added interface to queue" is taken for
            # the start of a list that never ends, so the action would time out.
            as_list = False
        proto = self._protocol
        if proto is None or proto.closed:
            state = "reconnecting" if self._reconnect_task and not self._closing else "closed"
            raise AMIConnectionError(f"not connected to Asterisk's AMI at {self.where} "
                                     f"({state}); cannot send {name}")
        future = proto.send(act, as_list=as_list)
        wait = self.action_timeout if timeout_s is None else timeout_s
        try:
            reply = await asyncio.wait_for(future, wait)
        except TimeoutError:
            proto.responses.pop(act.id, None)  # else panoramisk keeps it forever
            raise AMITimeoutError(f"Asterisk did not answer {name} within {wait:g} s") from None
        first = reply[0] if isinstance(reply, list) else reply
        if header(first, "Response") == "Error":
            raise AMIActionError(name, header(first, "Message"))
        return reply

    async def action(self, fields: Mapping[str, Any], *,
                     timeout_s: float | None = None) -> Event | list[Event]:
        """Send any action; a dict reply, or a list of dicts for list actions (the reply,
        the events, the closing ``*Complete`` event). Raises AMIActionError on Error."""
        reply = await self._send(fields, timeout_s=timeout_s)
        if isinstance(reply, list):
            return [_as_dict(m) for m in reply]
        return _as_dict(reply)

    async def originate(self, channel: str, *, context: str | None = None,
                        exten: str | None = None, priority: int = 1,
                        application: str | None = None, data: str | None = None,
                        caller_id: str | None = None, variables: dict[str, str] | None = None,
                        timeout_ms: int = 30000, account: str | None = None,
                        extra: Mapping[str, str] | None = None) -> OriginateResult:
        """Place a call and wait for its OriginateResponse.

        Always ``Async: true`` with an ActionID of our own: the result is the
        OriginateResponse carrying that ActionID, never another session's or call's.
        A Failure is a result (see ``reason``/``reason_text``), not an exception.
        ``extra`` adds other Originate headers (e.g. ChannelId/OtherChannelId to choose the
        uniqueids), but never Action, ActionID or Async.
        """
        if "call" not in self.events and self.events.lower() not in ("on", "all"):
            raise AMIError("originate needs the 'call' event class (OriginateResponse is a "
                           f"call event); this client subscribed to {self.events!r}")
        fields: dict[str, Any] = {"Action": "Originate", "Channel": channel, "Async": "true",
                                  "Timeout": str(timeout_ms)}
        if application:
            fields["Application"] = application
            if data is not None:
                fields["Data"] = data
        elif exten is not None or context is not None:
            fields.update(Context=context or "default", Exten=exten or "s",
                          Priority=str(priority))
        else:
            raise ValueError("originate needs context/exten or application")
        if caller_id:
            fields["CallerID"] = caller_id
        if account:
            fields["Account"] = account
        if variables:
            fields["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        for key, value in (extra or {}).items():
            if key.lower() in ("action", "actionid", "async"):
                raise ValueError(f"originate sets {key} itself")
            fields[key] = value
        action_id = f"starpay-originate-{uuid.uuid4().hex}"
        fields["ActionID"] = action_id
        # Asterisk answers with OriginateResponse when the call is answered or fails, which
        # can be long after the Timeout (the dialplan side runs first): allow a margin.
        response = self.wait_for("OriginateResponse",
                                 lambda e: header(e, "ActionID") == action_id,
                                 timeout=timeout_ms / 1000 + 30)
        try:
            # as_list=False: panoramisk completes the action on the first reply, so the
            # OriginateResponse with the same ActionID goes to dispatch (and to callbacks).
            reply = await self._send(fields, as_list=False)
        except BaseException:
            response.cancel()
            raise
        assert not isinstance(reply, list)
        if header(reply, "Event") == "OriginateResponse":
            # The call failed so fast that the event beat the ack and panoramisk handed it to
            # the action as its reply: pass it on to the callbacks ourselves.
            response.cancel()
            self._manager.dispatch(reply)
            return OriginateResult.from_event(_as_dict(reply))
        # A drop loses the event: fail now rather than wait out the timeout on a new link.
        dropped = self.wait_for("Disconnected", timeout=None)
        try:
            await asyncio.wait({response, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
        if not response.done():
            response.cancel()
            raise AMIConnectionError(
                f"AMI connection dropped before the OriginateResponse for {channel}: the call "
                "may or may not have been placed")
        return OriginateResult.from_event(response.result())

    async def queue_summary(self, queue: str | None = None) -> list[QueueSummary]:
        fields = {"Action": "QueueSummary", **({"Queue": queue} if queue else {})}
        reply = await self._send(fields)
        items = reply if isinstance(reply, list) else [reply]
        return [QueueSummary.from_event(m) for m in items
                if header(m, "Event") == "QueueSummary"]

    async def queue_status(self, queue: str | None = None) -> list[Event]:
        """QueueParams, QueueMember and QueueEntry events, as dicts."""
        fields = {"Action": "QueueStatus", **({"Queue": queue} if queue else {})}
        reply = await self._send(fields)
        items = reply if isinstance(reply, list) else [reply]
        return [_as_dict(m) for m in items
                if header(m, "Event") and not header(m, "Event").endswith("Complete")]

    async def command(self, cli: str, timeout_s: float | None = None) -> str:
        """Run a CLI command; its output text. Some commands are refused by Asterisk
        ("Command blacklisted"): use the dedicated actions for those."""
        reply = await self._send({"Action": "Command", "Command": cli}, as_list=False,
                                 timeout_s=timeout_s)
        assert not isinstance(reply, list)
        output = reply.get("Output")  # Asterisk 14+: one Output header per line
        if output is not None:
            return "\n".join(output) if isinstance(output, list) else str(output)
        # Older Asterisk: "Response: Follows" with a body ending in --END COMMAND--.
        return str(reply.content).replace("--END COMMAND--", "").rstrip()

    async def message_send(self, to: str, from_: str, body: str,
                           variables: dict[str, str] | None = None) -> Event:
        fields: dict[str, Any] = {"Action": "MessageSend", "To": to, "From": from_}
        if "\r" in body or "\n" in body:
            # A line break would end the header; Asterisk takes the body base64 instead.
            fields["Base64Body"] = base64.b64encode(body.encode()).decode()
        else:
            fields["Body"] = body
        if variables:
            fields["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        return await self._single(fields)

    async def play_dtmf(self, channel: str, digit: str, duration_ms: int = 120, *,
                        receive: bool = False) -> Event:
        """Send a key out of ``channel`` (Asterisk holds this AMI session while it plays),
        or with ``receive`` queue it on ``channel`` as if it had arrived there (at once)."""
        if len(digit) != 1 or digit not in _DTMF_KEYS:
            raise ValueError("digit must be one DTMF key: 0-9, *, #, A-D")
        action = {"Action": "PlayDTMF", "Channel": channel, "Digit": digit,
                  "Duration": str(duration_ms)}
        if receive:
            action["Receive"] = "true"
        return await self._single(action)

    async def reload(self, module: str | None = None) -> Event:
        return await self._single({"Action": "Reload", **({"Module": module} if module else {})})

    async def ping(self, timeout_s: float = 5.0) -> bool:
        """True only when Asterisk answers the Ping with a Pong."""
        try:
            reply = await self._send({"Action": "Ping"}, as_list=False, timeout_s=timeout_s)
        except AMIError:
            return False
        return header(reply, "Response") == "Success" and header(reply, "Ping") == "Pong"

    async def _single(self, fields: Mapping[str, Any]) -> Event:
        reply = await self._send(fields, as_list=False)
        assert not isinstance(reply, list)
        return _as_dict(reply)
