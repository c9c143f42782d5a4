"""The durable jobs table (ivr/jobs/ reads and writes it; the model lives here so one
metadata and one migration history cover every table)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ivr.storage.models import Base, BigId, utcnow

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")


class Job(Base):
    """One unit of background work: run ``kind``'s handler with ``payload`` at ``run_at``.

    ``running`` jobs belong to ``lease_owner`` until ``lease_expires``; a worker that dies
    (SIGKILL) stops renewing its leases and the job is claimed again when the lease runs
    out. ``dedupe_key`` is unique: deferring the same key twice makes one job."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"state IN {JOB_STATES}", name="ck_jobs_state"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="ck_jobs_attempts"),
        Index("ix_jobs_state_run_at", "state", "run_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
