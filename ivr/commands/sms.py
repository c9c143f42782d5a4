"""`ivr sms outbox|receive`: the texts StarPay queued and sent, and a customer's text typed
on the command line (so the whole loop works with the outbox transport, no provider)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ivr.commands.db import run_with_app

if TYPE_CHECKING:
    from ivr.app import App
    from ivr.config import Config
    from ivr.messaging.inbox import Accepted
    from ivr.messaging.outbox import MessageView


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sms", help="texts: what was queued and sent; play a customer's text")
    ssub = p.add_subparsers(dest="action", required=True)
    ob = ssub.add_parser("outbox", help="texts in and out, newest first, with state and "
                         "segments")
    ob.add_argument("--to", metavar="NUMBER", help="only this number's conversation")
    ob.add_argument("--limit", type=int, default=20)
    ob.add_argument("--json", action="store_true", help="one JSON object per line")
    ob.set_defaults(func=outbox_cmd)
    rc = ssub.add_parser("receive", help="a text from a customer, as if the provider had "
                         "delivered it; prints the replies queued")
    rc.add_argument("--from", dest="from_", metavar="NUMBER", required=True)
    rc.add_argument("--to", metavar="NUMBER", help="our number it was sent to "
                    "(default: [sms] sender)")
    rc.add_argument("--id", dest="provider_id", help="the provider's message id (repeat one "
                    "to play a redelivery; default: a new one)")
    rc.add_argument("text", nargs="+", help="what the customer wrote")
    rc.set_defaults(func=receive_cmd)


def _number(raw: str, cfg: Config) -> str | None:
    from ivr.phone import to_e164

    number = to_e164(raw, cfg.call.default_region)
    if number is None:
        print(f"ivr: {raw!r} is not a phone number", file=sys.stderr)
    return number


def _as_dict(m: MessageView) -> dict[str, object]:
    return {"id": m.id, "direction": m.direction, "to": m.to, "from": m.from_,
            "state": m.state, "kind": m.kind, "segments": m.segments,
            "encoding": m.encoding, "body": m.body, "provider": m.provider,
            "provider_id": m.provider_id, "account_id": m.account_id,
            "payment_id": m.payment_id, "statement_id": m.statement_id,
            "in_reply_to": m.in_reply_to, "dedupe_key": m.dedupe_key,
            "error_code": m.error_code, "error_text": m.error_text,
            "created_at": m.created_at.isoformat(), "updated_at": m.updated_at.isoformat()}


def _line(m: MessageView) -> str:
    arrow = "->" if m.direction == "out" else "<-"
    who = m.to if m.direction == "out" else m.from_
    enc = "" if m.encoding == "GSM-7" else f" {m.encoding}"
    error = f" ({m.error_code})" if m.error_code else ""
    return (f"{m.id:>6} {m.created_at:%Y-%m-%d %H:%M} {arrow} {who:<16} {m.kind:<8} "
            f"{m.state + error:<20} {m.segments}seg{enc}  {m.body}")


def outbox_cmd(args: argparse.Namespace, cfg: Config) -> int:
    to = None
    if args.to:
        to = _number(args.to, cfg)
        if to is None:
            return 2

    async def body(app: App) -> list[MessageView]:
        return await app.outbox.list(to=to, limit=args.limit)

    rows = run_with_app(cfg, body)
    if rows is None:
        return 1
    if args.json:
        for m in rows:
            print(json.dumps(_as_dict(m), ensure_ascii=False))
        return 0
    if not rows:
        print("no texts" + (f" with {to}" if to else ""))
        return 0
    for m in rows:
        print(_line(m))
    return 0


def receive_cmd(args: argparse.Namespace, cfg: Config) -> int:
    import uuid

    from ivr.messaging.inbox import InboundSms
    from ivr.texts import reply_to

    sender = _number(args.from_, cfg)
    to = (_number(args.to, cfg) if args.to else cfg.sms.sender)
    if sender is None or to is None:
        return 2
    text = " ".join(args.text)

    async def body(app: App) -> tuple[Accepted, list[MessageView]]:
        ctx = app.text_context()
        sms = InboundSms(provider="outbox", provider_id=args.provider_id or
                         f"cli-{uuid.uuid4().hex[:16]}", from_=sender, to=to, body=text,
                         received_at=datetime.now(UTC))
        acc = await app.inbox.handle(sms, lambda msg: reply_to(ctx, msg))
        replies = [m for m in [await app.outbox.get(i) for i in acc.reply_ids] if m]
        return acc, replies

    res = run_with_app(cfg, body)
    if res is None:
        return 1
    acc, replies = res
    print(f"received as message {acc.message_id}" +
          ("" if acc.first_time else " (a redelivery: answered with the stored replies)"))
    if not replies:
        print("no reply")
    for m in replies:
        print(_line(m))
    if any(m.state == "queued" for m in replies):
        print("(queued texts are sent by `ivr serve`'s jobs worker)")
    return 0
