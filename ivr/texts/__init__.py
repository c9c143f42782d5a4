"""Text replies: the SMS twin of ivr/flows/ (PAY, STOP, HELP, surveys; one module per
reply once they exist).

THE SEAM. Every inbound text reaches :func:`reply_to` exactly through
``Inbox.handle(sms, lambda msg: reply_to(ctx, msg))`` (ivr/messaging/inbox.py): the http
webhook, the asterisk transport and ``ivr sms receive`` all call it that way. It runs
once per inbound message (a redelivery after it finished is answered from the stored
replies without calling it), and should queue its replies with
``ctx.outbox.queue(..., in_reply_to=msg.id, dedupe_key=f"reply:{msg.id}")`` so that a
second run (a redelivery racing the first, a crash half way) adds nothing.

What is here now is a placeholder that answers every text with one short help line, so
the loop works end to end; the PAY/STOP/HELP engineer replaces it.
"""

from __future__ import annotations

from ivr.messaging.inbox import InboundMessage
from ivr.texts.context import TextContext

__all__ = ["TextContext", "reply_to"]


async def reply_to(ctx: TextContext, msg: InboundMessage) -> None:
    """Answer one inbound text (placeholder: a help line; see the module docstring)."""
    contact = f" or {ctx.help_contact}" if ctx.help_contact else ""
    await ctx.outbox.queue(
        msg.from_, f"{ctx.brand}: we got your message. To pay your bill call *PAY{contact}.",
        kind="help", dedupe_key=f"reply:{msg.id}", in_reply_to=msg.id)
