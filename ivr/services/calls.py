"""The call record: one row per call, opened when the call starts and closed when it ends.

Opening early means a call that dies with the process still leaves a trace (no end time);
closing is done from the flow's ``finally`` and shielded, so a hang-up cannot lose it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ivr.storage.calls import CallRecord
from ivr.storage.db import Database

Clock = Callable[[], datetime]


@dataclass
class CallFacts:
    """What the flow learns during a call; written to the record at the end."""

    uniqueid: str
    ani: str | None
    attestation: str | None
    started_at: datetime
    language: str = "en"
    verified_how: str = "none"
    account_id: int | None = None
    path: list[str] = field(default_factory=list)
    outcome: str | None = None
    payment_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    record_id: int | None = None


class CallLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def open(self, facts: CallFacts) -> None:
        async with self.db.write_session() as s:
            row = CallRecord(uniqueid=facts.uniqueid, ani=facts.ani,
                             attestation=facts.attestation, language=facts.language,
                             verified_how=facts.verified_how, path=[], details={},
                             started_at=facts.started_at)
            s.add(row)
            await s.flush()
            facts.record_id = row.id

    async def close(self, facts: CallFacts) -> None:
        ended = self.clock()
        async with self.db.write_session() as s:
            row = await s.get(CallRecord, facts.record_id) if facts.record_id else None
            if row is None:
                row = CallRecord(uniqueid=facts.uniqueid, started_at=facts.started_at)
                s.add(row)
            row.ani = facts.ani
            row.attestation = facts.attestation
            row.language = facts.language
            row.verified_how = facts.verified_how
            row.account_id = facts.account_id
            row.path = list(facts.path)
            row.outcome = facts.outcome
            row.payment_id = facts.payment_id
            row.details = dict(facts.details)
            row.ended_at = ended
            start = facts.started_at if facts.started_at.tzinfo else facts.started_at.replace(
                tzinfo=UTC)
            row.duration_s = max(0, int((ended - start).total_seconds()))
            await s.flush()
            facts.record_id = row.id

    async def get(self, record_id: int) -> CallRecord | None:
        async with self.db.session() as s:
            return await s.get(CallRecord, record_id)
