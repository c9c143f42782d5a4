"""The ``sms.send`` job: hand one stored message to the transport, once.

    kind = JobKind(send_job(outbox, transport, SenderPacer(rate)), retry=SEND_RETRY,
                   timeout=SEND_TIMEOUT)          # registered by ivr/app.py

One run of the job:

1. The message is loaded; one that is no longer ``queued``/``sending`` (already sent, a
   callback said delivered, refused) is left alone: the job is done.
2. A number that opted out since the message was queued gets nothing: the message becomes
   ``refused`` (the STOP confirmation excepted, see outbox.py).
3. The sender's pace (:class:`SenderPacer`, ``[sms] rate_per_second`` segments/s per From
   number, a long code sends about 1/s): a wait longer than :data:`MAX_PACE_WAIT` gives the
   job back for later (``Reschedule``, not counted as an attempt) instead of holding a
   worker slot.
4. An ``attempt`` event is stored and the message moves to ``sending``; then
   ``transport.send``. Success stores the provider's id and a ``sent`` event and moves the
   state forward (never back: a fast ``delivered`` callback stays).
5. A :class:`TransportError` is stored as an ``error`` event with its code. 21610 (opted
   out) opts that recipient out, fails this message, and is not retried. Other refusals
   (``retryable=False``) fail the message. Retryable errors (5xx, 429, timeouts) raise, and
   the job's :data:`SEND_RETRY` runs it again with backoff; after the last attempt the
   message is ``failed`` and the job too (``ivr jobs list`` shows it).

Not sending twice. Every attempt carries the same key (``OutgoingSms.key``, from the
message id). A transport whose provider honours it (``idempotent=True``) is simply asked
again. For one that does not, the hard case is a timeout after the provider accepted (or a
crash between its answer and our commit): before every attempt after the first, the job
asks ``transport.lookup(msg)`` whether the provider has a message with our key (the http
transport finds it by the message id it puts in the status-callback URL); if it has, that
is recorded as the send and nothing is sent again. A lookup that itself fails counts as a
failed attempt, so we never resend blind. What remains: a provider that can neither
deduplicate nor be asked, where a timeout means a text may go twice; no shipped transport
is like that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from ivr.jobs.retry import RetryStrategy
from ivr.jobs.worker import JobContext, Reschedule
from ivr.messaging import optouts
from ivr.messaging.outbox import (
    SEND_ATTEMPTS,
    STOP_CONFIRMATION,
    Outbox,
    advance_in,
    event_in,
    get_in,
    set_provider_in,
)
from ivr.messaging.transports.base import OPTED_OUT, OutgoingSms, Sent, Transport, TransportError
from ivr.storage.tx import Tx

log = logging.getLogger(__name__)

# 10 s, 30 s, 90 s, 4.5 min, 13.5 min: a provider outage of about 20 minutes loses nothing.
SEND_RETRY = RetryStrategy(max_attempts=SEND_ATTEMPTS, base_delay=10.0, factor=3.0,
                           max_delay=1800.0)
SEND_TIMEOUT = 60.0  # one run, pacing included
MAX_PACE_WAIT = 5.0  # seconds a run may wait for its sender's pace before giving the slot up


class SendFailed(Exception):
    """This attempt did not reach the provider; the job's retry strategy takes over."""


class SenderPacer:
    """Segments per second per sender, in this process (each ``ivr serve`` paces its own
    sends; run one sender's traffic through one process, or divide the rate)."""

    def __init__(self, rate_per_second: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_second
        self.clock = clock
        self._free_at: dict[str, float] = {}

    def wait_for(self, sender: str) -> float:
        """Seconds until ``sender`` may send again (nothing is reserved)."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, self._free_at.get(sender, 0.0) - self.clock())

    def reserve(self, sender: str, segments: int) -> float:
        """Book ``segments`` for ``sender``; the seconds to wait before sending them."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        start = max(now, self._free_at.get(sender, 0.0))
        self._free_at[sender] = start + max(1, segments) / self.rate
        return start - now


def send_job(outbox: Outbox, transport: Transport, pacer: SenderPacer | None = None
             ) -> Callable[[JobContext], Awaitable[None]]:
    db = outbox.db

    def begin(tx: Tx, message_id: int, attempt: int) -> OutgoingSms | None:
        msg = get_in(tx, message_id)
        if msg is None or msg.state not in ("queued", "sending"):
            return None
        now = outbox.clock()
        if msg.kind != STOP_CONFIRMATION and optouts.is_opted_out_in(tx, msg.to):
            event_in(tx, msg.id, "refused", raw={"reason": "opted_out"}, at=now)
            advance_in(tx, msg.id, "refused", now, "opted_out",
                       "the number opted out before it was sent")
            return None
        event_in(tx, msg.id, "attempt", raw={"attempt": attempt,
                                             "transport": transport.name}, at=now)
        advance_in(tx, msg.id, "sending", now)
        return OutgoingSms(message_id=msg.id, to=msg.to, from_=msg.from_, body=msg.body,
                           segments=msg.segments, attempt=attempt)

    def sent_in(tx: Tx, msg: OutgoingSms, sent: Sent, found: bool) -> None:
        now = outbox.clock()
        set_provider_in(tx, msg.message_id, transport.name, sent.provider_id, now)
        event_in(tx, msg.message_id, "sent", raw={"provider_id": sent.provider_id,
                                                  "status": sent.status,
                                                  "found_by_lookup": found}, at=now)
        advance_in(tx, msg.message_id, sent.status, now)

    def failed_in(tx: Tx, msg: OutgoingSms, exc: TransportError, final: bool) -> None:
        now = outbox.clock()
        raw: dict[str, Any] = {"attempt": msg.attempt, "error": str(exc)[:500],
                               "retryable": exc.retryable, "maybe_sent": exc.maybe_sent}
        event_in(tx, msg.message_id, "error", code=exc.code, raw=raw, at=now)
        if exc.code == OPTED_OUT:
            optouts.opt_out_in(tx, msg.to, "provider", msg.message_id, at=now)
        if final:
            advance_in(tx, msg.message_id, "failed", now, exc.code or "transport",
                       str(exc))

    async def handle(job: JobContext) -> None:
        message_id = int(job.payload["message_id"])
        if pacer is not None:
            current = await outbox.get(message_id)
            if current is None:
                return
            wait = pacer.wait_for(current.from_)
            if wait > MAX_PACE_WAIT:
                raise Reschedule(outbox.clock() + timedelta(seconds=wait),
                                 f"pacing sender {current.from_}")
        msg = await db.run(lambda tx: begin(tx, message_id, job.attempt))
        if msg is None:
            return
        try:
            found = None
            if msg.attempt > 1 and not transport.idempotent:
                found = await transport.lookup(msg)
            if found is not None:
                sent, by_lookup = found, True
            else:
                if pacer is not None:
                    await asyncio.sleep(pacer.reserve(msg.from_, msg.segments))
                sent, by_lookup = await transport.send(msg), False
        except TransportError as exc:
            error, final = exc, not exc.retryable or exc.code == OPTED_OUT or job.last_attempt
            await db.run(lambda tx: failed_in(tx, msg, error, final))
            if exc.code == OPTED_OUT or not exc.retryable:
                log.warning("sms %d to %s refused by %s (%s): %s", msg.message_id, msg.to,
                            transport.name, exc.code, exc)
                return
            raise SendFailed(f"sms {msg.message_id}: {exc} (code {exc.code})") from exc
        await db.run(lambda tx: sent_in(tx, msg, sent, by_lookup))

    return handle
