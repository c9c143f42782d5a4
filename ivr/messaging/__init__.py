"""Messaging core, channel-agnostic: texts in and out, stored before anything is sent.

    from ivr.messaging.outbox import Outbox, SEND_JOB, STOP_CONFIRMATION
    from ivr.messaging.inbox import Inbox, InboundSms, Accepted
    from ivr.messaging.optouts import OptOuts
    from ivr.messaging.segments import count          # Segments(encoding, parts, chars)
    from ivr.messaging.transports.base import Transport, OutgoingSms, Sent, TransportError

- outbox.py: ``Outbox(db, sender=...)``; ``queue_in(tx, to, body, kind=, dedupe_key=, ...)``
  inside your transaction (the message and its ``sms.send`` job commit with your write),
  ``await queue(...)`` on its own; None when the key was used or the number opted out.
  ``record_status(...)`` for status callbacks (never moves a state back).
- sending.py: the ``sms.send`` job: pacing per sender, retries by ``SEND_RETRY`` on
  retryable transport errors, no second send (provider idempotency key or a lookup after
  an attempt that may have landed), 21610 opts out that recipient only.
- inbox.py: ``Inbox(db).accept(InboundSms(...)) -> Accepted(message_id, first_time,
  reply_ids, handled)``; ``handle(sms, reply)`` runs the reply handler once.
- optouts.py: STOP / START bookkeeping, history in the audit log.
- segments.py: GSM-7 160/153, UCS-2 70/67.
- transports/: base.py (the protocol), outbox.py (the embedded default); http.py and
  asterisk.py plug in through ``App.transport`` in ivr/app.py.

Tables: ivr/storage/messages.py (messages, message_events, opt_outs; migration 0006).
The replies themselves (PAY, STOP, HELP) live in ivr/texts/, which this package never
imports; the web app (webhooks) in ivr/web/.
"""
