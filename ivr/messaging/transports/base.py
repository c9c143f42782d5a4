"""What every SMS transport is: a handler the ``sms.send`` job hands one message at a time.

The shape is aiosmtpd's: the transport is a *handler* (it knows how to hand a message to
one provider, and nothing of our tables, retries or opt-outs); whoever owns its lifetime
(the composition root, ivr/app.py) builds it once and closes it with the app. Inbound
traffic does not go through the transport object: the web app (http webhooks) or the AMI
listener (asterisk) turns what arrives into an :class:`ivr.messaging.inbox.InboundSms` or a
status for :meth:`ivr.messaging.outbox.Outbox.record_status`.

A transport implements :class:`Transport`:

    name: str                      # stored as messages.provider ("outbox", "http", ...)
    idempotent: bool               # True: resending OutgoingSms.key never sends twice
    async send(msg) -> Sent        # the provider took it; Sent.provider_id is its id
    async lookup(msg) -> Sent|None # after an attempt that may have reached the provider:
                                   # did it? (by msg.key, or msg.message_id in the status
                                   # callback URL); None: it never arrived, send again
    async close() -> None

and raises :class:`TransportError` when the provider did not take the message:
``retryable=True`` for 5xx, 429, connection errors and timeouts (the job retries with
backoff), ``False`` for a refusal (4xx: bad number, opted out); ``code`` is the provider's
error code as text ("21610" is "the recipient has opted out", :data:`OPTED_OUT`);
``maybe_sent=True`` when the request may have been accepted although no answer came back
(a read timeout after the request was written): see ivr/messaging/sending.py for what is
done then.

Where the next transports plug in: ``transports/http.py`` (REST send with basic auth and a
status-callback URL; webhooks in ivr/web/) and ``transports/asterisk.py`` (AMI
MessageSend; inbound SIP MESSAGE via the dialplan), each built in ivr/app.py's
``App.transport`` from ``[sms] transport``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

OPTED_OUT = "21610"  # the provider's "recipient has opted out" (the widely copied code)


@dataclass(frozen=True)
class OutgoingSms:
    """One message as a transport sees it."""

    message_id: int
    to: str  # E.164
    from_: str  # E.164 or a short code
    body: str
    segments: int
    attempt: int  # from 1

    @property
    def key(self) -> str:
        """Our idempotency key for the provider: the same for every attempt."""
        return f"starpay-sms-{self.message_id}"


@dataclass(frozen=True)
class Sent:
    """The provider has the message. ``status`` is what we know now, one of our states:
    ``sent`` (handed on; callbacks follow) or ``delivered`` (the outbox transport, a
    provider that answers synchronously)."""

    provider_id: str
    status: str = "sent"


class TransportError(Exception):
    def __init__(self, message: str, *, retryable: bool, code: str | None = None,
                 maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.maybe_sent = maybe_sent


class Transport(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def idempotent(self) -> bool: ...

    async def send(self, msg: OutgoingSms) -> Sent: ...

    async def lookup(self, msg: OutgoingSms) -> Sent | None: ...

    async def close(self) -> None: ...
