"""The embedded default transport: nothing leaves the box.

"Sending" marks the message delivered in our own table (the job records it), so the whole
loop works with no provider: ``ivr sms outbox`` shows what would have gone out, ``ivr sms
receive`` plays the customer. The sink of aiosmtpd's handlers, for texts.
"""

from __future__ import annotations

from ivr.messaging.transports.base import OutgoingSms, Sent


class OutboxTransport:
    name = "outbox"
    idempotent = True  # the provider id is ours: a second "send" is the same message

    async def send(self, msg: OutgoingSms) -> Sent:
        return Sent(provider_id=msg.key, status="delivered")

    async def lookup(self, msg: OutgoingSms) -> Sent | None:
        return None  # a send never half-happens here

    async def close(self) -> None:
        return None
