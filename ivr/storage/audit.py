"""Append to the audit log. There is deliberately no update or delete helper."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.storage.models import AuditEntry
from ivr.storage.tx import Tx


def record(session: AsyncSession, actor: str, action: str, subject: str | None = None,
           **details: Any) -> AuditEntry:
    """Add an entry to the session's transaction: it commits or rolls back with the change
    it describes. Never put card numbers, PINs or pressed digits in ``details``."""
    entry = AuditEntry(actor=actor, action=action, subject=subject, details=details)
    session.add(entry)
    return entry


def append(tx: Tx, actor: str, action: str, subject: str | None = None,
           **details: Any) -> None:
    """The same for a Core transaction (Database.run): the entry commits with it."""
    tx.execute(_INSERT, {"actor": actor, "action": action, "subject": subject,
                         "details": details})


_INSERT = insert(AuditEntry)
