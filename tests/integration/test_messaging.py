"""The messaging core on SQLite and on a real PostgreSQL: the outbox queues once per key and
never to an opted-out number, the sms.send job retries a provider's 5xx without sending
twice (and finds a send that timed out after the provider took it), 21610 opts out only that
number, status callbacks never move a state back, and a redelivered inbound text is
recognised and answered from the stored replies."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.app import App
from ivr.cli import main
from ivr.config import Config, DatabaseConfig, PaymentsConfig
from ivr.jobs.worker import JobKind, Worker
from ivr.messaging.inbox import InboundMessage, InboundSms, Inbox
from ivr.messaging.optouts import OptOuts
from ivr.messaging.outbox import SEND_JOB, STOP_CONFIRMATION, Outbox
from ivr.messaging.sending import SEND_RETRY, send_job
from ivr.messaging.transports.base import OPTED_OUT, OutgoingSms, Sent, TransportError
from ivr.storage.db import Database
from ivr.storage.jobs import Job
from ivr.storage.models import AuditEntry
from ivr.storage.tx import Tx

A, B = "+15551230001", "+15551230002"
SENDER = "+15555550100"
T0 = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


class FakeProvider:
    """A provider behind the Transport protocol: what it accepted, by our key; each send
    answers from ``script`` in turn ("ok", "5xx", "timeout-after-accept", "21610", "400")."""

    name = "fake"

    def __init__(self, script: Callable[[OutgoingSms], str] | None = None,
                 idempotent: bool = False) -> None:
        self.script = script or (lambda msg: "ok")
        self.idempotent = idempotent
        self.accepted: dict[str, OutgoingSms] = {}  # our key -> message
        self.calls: list[tuple[int, str]] = []  # (message id, outcome)
        self.lookups = 0

    async def send(self, msg: OutgoingSms) -> Sent:
        outcome = self.script(msg)
        self.calls.append((msg.message_id, outcome))
        if outcome == "5xx":
            raise TransportError("HTTP 503 from provider", retryable=True, code="503")
        if outcome == "21610":
            raise TransportError("recipient opted out", retryable=False, code=OPTED_OUT)
        if outcome == "400":
            raise TransportError("invalid To", retryable=False, code="21211")
        self.accepted[msg.key] = msg
        if outcome == "timeout-after-accept":
            raise TransportError("read timed out", retryable=True, maybe_sent=True)
        return Sent(provider_id=f"SM{msg.message_id}")

    async def lookup(self, msg: OutgoingSms) -> Sent | None:
        self.lookups += 1
        return Sent(provider_id=f"SM{msg.message_id}") if msg.key in self.accepted else None

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _worker(db: Database, outbox: Outbox, provider: FakeProvider, clock: Clock) -> Worker:
    return Worker(db, {SEND_JOB: JobKind(send_job(outbox, provider), retry=SEND_RETRY)},
                  clock=clock)


async def _jobs(db: Database) -> list[Job]:
    async with db.session() as s:
        return list((await s.execute(select(Job).where(Job.kind == SEND_JOB)
                                     .order_by(Job.id))).scalars())


async def _run_until_quiet(worker: Worker, clock: Clock, rounds: int = 8) -> None:
    for _ in range(rounds):
        await worker.run_due()
        clock.now += timedelta(hours=1)  # past any backoff


async def test_queue_is_once_per_key_and_commits_with_the_callers_write(db: Database) -> None:
    outbox = Outbox(db, sender=SENDER)
    first = await outbox.queue(A, "Your bill", kind="notice", dedupe_key="notice:1")
    assert first is not None
    assert await outbox.queue(A, "Your bill", kind="notice", dedupe_key="notice:1") is None
    assert [m.id for m in await outbox.list()] == [first]
    (job,) = await _jobs(db)
    assert job.payload == {"message_id": first} and job.dedupe_key == f"sms:{first}"
    msg = await outbox.get(first)
    assert msg is not None and (msg.state, msg.from_, msg.segments) == ("queued", SENDER, 1)

    class Boom(Exception):
        pass

    def business(tx: Tx) -> None:
        outbox.queue_in(tx, B, "Receipt", kind="receipt", dedupe_key="receipt:9")
        raise Boom  # the business write failed: its text must not exist either

    with pytest.raises(Boom):
        await db.run(business)
    assert await outbox.by_key("receipt:9") is None and len(await _jobs(db)) == 1


async def test_an_opted_out_number_gets_only_the_stop_confirmation(db: Database) -> None:
    outbox, optouts = Outbox(db, sender=SENDER), OptOuts(db)
    assert await optouts.opt_out(A, "keyword") is True
    assert await optouts.opt_out(A, "keyword") is False  # already
    assert await outbox.queue(A, "Bill", kind="notice", dedupe_key="notice:1") is None
    refused = await outbox.by_key("notice:1")
    assert refused is not None and (refused.state, refused.error_code) == ("refused",
                                                                             "opted_out")
    stop = await outbox.queue(A, "Unsubscribed", kind=STOP_CONFIRMATION, dedupe_key="stop:1")
    assert stop is not None
    assert await outbox.queue(B, "Bill", kind="notice", dedupe_key="notice:2") is not None
    assert [j.payload["message_id"] for j in await _jobs(db)] == [
        stop, (await outbox.by_key("notice:2")).id]  # type: ignore[union-attr]

    assert await optouts.opt_in(A, "keyword") is True  # START
    assert not await optouts.is_opted_out(A)
    assert await outbox.queue(A, "Bill", kind="notice", dedupe_key="notice:3") is not None
    async with db.session() as s:
        actions = (await s.execute(select(AuditEntry.action).where(
            AuditEntry.subject == f"number:{A}").order_by(AuditEntry.id))).scalars().all()
    assert actions == ["sms.opt_out", "sms.opt_in"]


async def test_a_5xx_is_retried_and_the_text_sent_once(db: Database) -> None:
    clock = Clock()
    outbox = Outbox(db, sender=SENDER, clock=clock)
    tries = iter(["5xx", "5xx", "ok"])
    provider = FakeProvider(lambda msg: next(tries))
    mid = await outbox.queue(A, "Receipt", kind="receipt", dedupe_key="receipt:1")
    assert mid is not None
    worker = _worker(db, outbox, provider, clock)
    await _run_until_quiet(worker, clock)
    assert [o for _, o in provider.calls] == ["5xx", "5xx", "ok"]
    assert len(provider.accepted) == 1
    msg = await outbox.get(mid)
    assert msg is not None and (msg.state, msg.provider, msg.provider_id) == ("sent", "fake",
                                                                               f"SM{mid}")
    events = [(e.status, e.provider_code) for e in await outbox.events(mid)]
    assert events == [("queued", None), ("attempt", None), ("error", "503"),
                      ("attempt", None), ("error", "503"), ("attempt", None), ("sent", None)]
    (job,) = await _jobs(db)
    assert (job.state, job.attempts) == ("done", 3)


async def test_a_timeout_after_the_provider_took_it_is_not_sent_again(db: Database) -> None:
    clock = Clock()
    outbox = Outbox(db, sender=SENDER, clock=clock)
    tries = iter(["timeout-after-accept", "ok"])
    provider = FakeProvider(lambda msg: next(tries))
    mid = await outbox.queue(A, "Receipt", kind="receipt", dedupe_key="receipt:1")
    await _run_until_quiet(_worker(db, outbox, provider, clock), clock)
    assert [o for _, o in provider.calls] == ["timeout-after-accept"]  # no second send
    assert provider.lookups == 1
    msg = await outbox.get(mid)  # type: ignore[arg-type]
    assert msg is not None and (msg.state, msg.provider_id) == ("sent", f"SM{mid}")
    sent = [e for e in await outbox.events(mid) if e.status == "sent"]  # type: ignore[arg-type]
    assert len(sent) == 1 and sent[0].raw["found_by_lookup"] is True


async def test_every_attempt_failing_leaves_the_message_failed(db: Database) -> None:
    clock = Clock()
    outbox = Outbox(db, sender=SENDER, clock=clock)
    provider = FakeProvider(lambda msg: "5xx")
    mid = await outbox.queue(A, "Receipt", kind="receipt", dedupe_key="receipt:1")
    await _run_until_quiet(_worker(db, outbox, provider, clock), clock, rounds=10)
    assert len(provider.calls) == SEND_RETRY.max_attempts
    msg = await outbox.get(mid)  # type: ignore[arg-type]
    assert msg is not None and (msg.state, msg.error_code) == ("failed", "503")
    (job,) = await _jobs(db)
    assert job.state == "failed"


async def test_21610_opts_out_that_number_only(db: Database) -> None:
    clock = Clock()
    outbox, optouts = Outbox(db, sender=SENDER, clock=clock), OptOuts(db)
    provider = FakeProvider(lambda msg: "21610" if msg.to == A else "ok")
    to_a = await outbox.queue(A, "Bill", kind="notice", dedupe_key="notice:a")
    to_b = await outbox.queue(B, "Bill", kind="notice", dedupe_key="notice:b")
    await _run_until_quiet(_worker(db, outbox, provider, clock), clock)
    assert sorted(provider.calls) == sorted([(to_a, "21610"), (to_b, "ok")])  # not retried
    assert await optouts.is_opted_out(A) and not await optouts.is_opted_out(B)
    a, b = await outbox.get(to_a), await outbox.get(to_b)  # type: ignore[arg-type]
    assert a is not None and (a.state, a.error_code) == ("failed", OPTED_OUT)
    assert b is not None and b.state == "sent"
    assert [j.state for j in await _jobs(db)] == ["done", "done"]
    # And nothing more goes to A; B still gets texts.
    assert await outbox.queue(A, "Again", kind="notice", dedupe_key="notice:a2") is None
    assert await outbox.queue(B, "Again", kind="notice", dedupe_key="notice:b2") is not None


async def test_a_stop_between_queueing_and_sending_stops_the_text(db: Database) -> None:
    clock = Clock()
    outbox = Outbox(db, sender=SENDER, clock=clock)
    provider = FakeProvider()
    mid = await outbox.queue(A, "Bill", kind="notice", dedupe_key="notice:1")
    await OptOuts(db).opt_out(A, "keyword")
    await _run_until_quiet(_worker(db, outbox, provider, clock), clock, rounds=1)
    assert provider.calls == []
    msg = await outbox.get(mid)  # type: ignore[arg-type]
    assert msg is not None and msg.state == "refused"


async def test_status_callbacks_never_move_a_state_back(db: Database) -> None:
    outbox = Outbox(db, sender=SENDER)
    statuses = ["sending", "sent", "delivered"]
    for n, order in enumerate(itertools.permutations(statuses)):
        mid = await outbox.queue(A, "Bill", kind="notice", dedupe_key=f"notice:{n}")
        assert mid is not None
        for status in [*order, *order]:  # each twice, in this order
            await outbox.record_status(message_id=mid, provider="fake",
                                       provider_id=f"SM{mid}", status=status)
        msg = await outbox.get(mid)
        assert msg is not None and msg.state == "delivered", order
        assert len([e for e in await outbox.events(mid) if e.status != "queued"]) == 6

    # Found by the provider's id; a late "sent" after "delivered" is kept, but moves nothing.
    late = await outbox.record_status(provider="fake", provider_id=f"SM{mid}", status="sent")
    assert late is not None and (late.state, late.moved) == ("delivered", False)
    assert await outbox.record_status(provider="fake", provider_id="SMnone",
                                      status="sent") is None
    # Undelivered with 21610 in a callback: that recipient opts out, no one else.
    other = await outbox.queue(B, "Bill", kind="notice", dedupe_key="notice:b")
    res = await outbox.record_status(message_id=other, status="undelivered", code=OPTED_OUT,
                                     raw={"ErrorCode": OPTED_OUT})
    assert res is not None and (res.state, res.moved) == ("undelivered", True)
    assert await OptOuts(db).is_opted_out(B) and not await OptOuts(db).is_opted_out(A)


async def test_a_redelivered_inbound_text_is_recognised(db: Database) -> None:
    outbox, inbox = Outbox(db, sender=SENDER), Inbox(db)
    runs: list[int] = []

    async def reply(msg: InboundMessage) -> None:
        runs.append(msg.id)
        await outbox.queue(msg.from_, "Reply", kind="reply", dedupe_key=f"reply:{msg.id}",
                           in_reply_to=msg.id)

    sms = InboundSms(provider="fake", provider_id="SM-in-1", from_=A, to=SENDER, body="PAY",
                     received_at=T0)
    first = await inbox.handle(sms, reply)
    again = await inbox.handle(sms, reply)
    assert first.first_time and not again.first_time
    assert first.message_id == again.message_id and runs == [first.message_id]
    assert first.reply_ids == again.reply_ids and len(first.reply_ids) == 1
    # The same id from another provider is another message.
    other = await inbox.accept(InboundSms(provider="other", provider_id="SM-in-1", from_=A,
                                          to=SENDER, body="PAY"))
    assert other.first_time and other.message_id != first.message_id

    # Accepted but the handler never finished (a crash): a redelivery runs it again, and
    # its keyed reply is not doubled.
    half = InboundSms(provider="fake", provider_id="SM-in-2", from_=B, to=SENDER, body="HI")
    acc = await inbox.accept(half)
    await reply(await outbox.get(acc.message_id))  # type: ignore[arg-type]
    retry = await inbox.handle(half, reply)
    assert not retry.first_time and retry.handled and len(retry.reply_ids) == 1


async def test_the_app_sends_through_the_outbox_transport(db_url: str, tmp_path: Path
                                                          ) -> None:
    cfg = Config(database=DatabaseConfig(url=db_url),
                 payments=PaymentsConfig(sandbox_path=str(tmp_path / "ledger.db")))
    async with App(cfg) as app:
        mid = await app.outbox.queue(A, "Hello", kind="notice", dedupe_key="n:1")
        kinds = app.job_kinds()
        assert SEND_JOB in kinds and app.transport.name == "outbox"
        worker = Worker(app.database(), {SEND_JOB: kinds[SEND_JOB]})
        assert await worker.run_due() == 1
        msg = await app.outbox.get(mid)  # type: ignore[arg-type]
        assert msg is not None and (msg.state, msg.provider) == ("delivered", "outbox")


def test_cli_receive_then_outbox(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STARPAY_DATABASE_URL", db_url)
    assert main(["sms", "receive", "--from", "555-123-0001", "--id", "SM1", "hello"]) == 0
    out = capsys.readouterr().out
    assert "received as message" in out and "-> +15551230001" in out
    assert main(["sms", "receive", "--from", "5551230001", "--id", "SM1", "hello"]) == 0
    assert "redelivery" in capsys.readouterr().out
    assert main(["sms", "outbox", "--to", "+15551230001", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # one inbound, one reply: the redelivery added nothing
    assert main(["sms", "receive", "--from", "not a number", "x"]) == 2

