"""The embedded sandbox processor: deterministic outcomes chosen by the card token.

It keeps its own ledger in a SQLite file (default ``var/sandbox-gateway.db``), separate from
StarPay's database as a real processor would be, so a look-up after a restart (or a crash of
StarPay between the charge and our commit) finds the charge. Charges are idempotent by key.

Test tokens (any other token is approved):

==================================== ====================================================
``tok_sandbox_approve``              approved
``tok_sandbox_insufficient_funds``   declined, ``insufficient_funds``
``tok_sandbox_expired_card``         declined, ``expired_card``
``tok_sandbox_do_not_honor``         declined, ``do_not_honor``
``tok_sandbox_processing_error``     declined, ``processing_error`` (nothing taken)
``tok_sandbox_authentication_required`` ``action_required`` (send the caller to an agent)
``tok_sandbox_timeout_after_charge`` charged, then :class:`OutcomeUnknown` (a repeat with the
                                     same key, or a look-up, reports the approval)
``tok_sandbox_timeout_before_charge`` :class:`OutcomeUnknown`, nothing recorded
==================================== ====================================================

``refund_fault`` makes the next refund time out before or after it is made (for tests of
the refund reconciler). ``timeout_rate`` injects the two timeout kinds at random (half
each) for any token, for the benchmark.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Literal

from ivr.gateways.base import (
    ChargeFailed,
    ChargeResult,
    OutcomeUnknown,
    RefundResult,
    reason_for,
)
from ivr.storage.threads import StorageThreads

DECLINES = {
    "tok_sandbox_insufficient_funds": "insufficient_funds",
    "tok_sandbox_expired_card": "expired_card",
    "tok_sandbox_do_not_honor": "do_not_honor",
    "tok_sandbox_processing_error": "processing_error",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    decline_code TEXT,
    reference TEXT UNIQUE,
    refunded_minor INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS refunds (
    idempotency_key TEXT PRIMARY KEY,
    charge_reference TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    reference TEXT NOT NULL
);
"""


class SandboxGateway:
    name = "sandbox"

    def __init__(self, path: str | Path = "var/sandbox-gateway.db", *,
                 timeout_rate: float = 0.0, seed: int | None = None,
                 latency: float = 0.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_rate = timeout_rate
        self.latency = latency
        self._rng = random.Random(seed)
        # The next refund times out "before" it reaches the ledger or "after" it is made.
        self.refund_fault: Literal["before", "after"] | None = None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a committed charge survives a killed process (what the crash tests and
        # the reconciler rely on), not a power cut, which a stand-in processor need not;
        # it saves an fsync per charge.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        # One thread for the ledger, handed work as the database's storage threads are
        # (cheaper per charge than asyncio.to_thread's pool).
        self._thread = StorageThreads(1, "sandbox-ledger")

    async def close(self) -> None:
        await asyncio.to_thread(self._thread.shutdown)
        with self._lock:
            self._db.close()

    # -- ledger (runs on its storage thread: sqlite3 blocks) --

    def _row(self, where: str, value: str) -> tuple | None:
        return self._db.execute(
            "SELECT token, amount_minor, currency, status, decline_code, reference "
            f"FROM charges WHERE {where} = ?", (value,)).fetchone()

    @staticmethod
    def _result(row: tuple) -> ChargeResult:
        _token, amount, currency, status, code, ref = row
        return ChargeResult(status=status, amount_minor=amount, currency=currency,
                            reference=ref, decline_code=code,
                            reason=reason_for(code) if code else None)

    def _charge_sync(self, token: str, amount: int, currency: str, key: str,
                     fault: str | None) -> tuple[ChargeResult | None, bool]:
        """(result, replayed); result None means the request 'never arrived'."""
        with self._lock:
            if fault != "before":
                # A new key (the common case) is one statement: the INSERT is the look-up,
                # and the result is built from what was written, not read back.
                code = DECLINES.get(token)
                status = "declined" if code else "approved"
                if token == "tok_sandbox_authentication_required":
                    status, code = "action_required", "authentication_required"
                ref = "sbx_" + secrets.token_hex(8)
                inserted = self._db.execute(
                    "INSERT INTO charges (idempotency_key, token, amount_minor, currency,"
                    " status, decline_code, reference) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (idempotency_key) DO NOTHING",
                    (key, token, amount, currency, status, code, ref)).rowcount
                if inserted:
                    return self._result((token, amount, currency, status, code, ref)), False
            row = self._row("idempotency_key", key)
            if row is None:  # fault "before" on a new key
                return None, False
            if (row[0], row[1], row[2]) != (token, amount, currency):
                raise ChargeFailed("idempotency key reused with different parameters",
                                   code="idempotency_error")
            return self._result(row), True

    # -- the Gateway interface --

    async def charge(self, method_token: str, amount_minor: int, currency: str,
                     idempotency_key: str, metadata: dict[str, str],
                     customer: str | None = None) -> ChargeResult:
        if amount_minor <= 0:
            raise ChargeFailed("amount must be positive", code="invalid_amount")
        fault = None
        if method_token == "tok_sandbox_timeout_before_charge":
            fault = "before"
        elif method_token == "tok_sandbox_timeout_after_charge":
            fault = "after"
        elif self.timeout_rate and self._rng.random() < self.timeout_rate:
            fault = self._rng.choice(("before", "after"))
        if self.latency:
            await asyncio.sleep(self.latency)
        result, replayed = await self._thread.submit(
            self._charge_sync, method_token, amount_minor, currency.upper(), idempotency_key,
            fault)
        if result is None:
            raise OutcomeUnknown("sandbox: timed out before the charge reached the processor")
        if fault == "after" and not replayed:
            raise OutcomeUnknown("sandbox: timed out after the charge was made",
                                 reference=result.reference)
        return result

    async def lookup(self, idempotency_key: str,
                     reference: str | None = None) -> ChargeResult | None:
        def _get() -> ChargeResult | None:
            with self._lock:
                row = (self._row("reference", reference) if reference
                       else self._row("idempotency_key", idempotency_key))
                return self._result(row) if row else None
        return await self._thread.submit(_get)

    async def refund(self, reference: str, amount_minor: int,
                     idempotency_key: str) -> RefundResult:
        fault, self.refund_fault = self.refund_fault, None
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "before":
            raise OutcomeUnknown("sandbox: timed out before the refund reached the processor")
        result = await self._thread.submit(self._refund_sync, reference, amount_minor,
                                           idempotency_key)
        if fault == "after":
            raise OutcomeUnknown("sandbox: timed out after the refund was made",
                                 reference=result.reference)
        return result

    def _refund_sync(self, reference: str, amount_minor: int, key: str) -> RefundResult:
        with self._lock:
            old = self._db.execute("SELECT reference, amount_minor, charge_reference FROM "
                                   "refunds WHERE idempotency_key = ?", (key,)).fetchone()
            if old:
                if (old[2], old[1]) != (reference, amount_minor):
                    raise ChargeFailed("idempotency key reused with different parameters",
                                       code="idempotency_error")
                return RefundResult(old[0], old[1], "succeeded")
            row = self._db.execute(
                "SELECT amount_minor - refunded_minor, status FROM charges "
                "WHERE reference = ?", (reference,)).fetchone()
            if row is None or row[1] != "approved":
                raise ChargeFailed(f"no approved charge {reference}", code="no_charge")
            if amount_minor <= 0 or amount_minor > row[0]:
                raise ChargeFailed("refund is more than what is left of the charge",
                                   code="amount_too_large")
            ref = "sbr_" + secrets.token_hex(8)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE charges SET refunded_minor = refunded_minor + ? "
                             "WHERE reference = ?", (amount_minor, reference))
            self._db.execute("INSERT INTO refunds VALUES (?, ?, ?, ?)",
                             (key, reference, amount_minor, ref))
            self._db.execute("COMMIT")
            return RefundResult(ref, amount_minor, "succeeded")

    async def lookup_refund(self, reference: str,
                            idempotency_key: str) -> RefundResult | None:
        def _get() -> RefundResult | None:
            with self._lock:
                row = self._db.execute(
                    "SELECT reference, amount_minor FROM refunds WHERE idempotency_key = ? "
                    "AND charge_reference = ?", (idempotency_key, reference)).fetchone()
            return RefundResult(row[0], row[1], "succeeded") if row else None
        return await self._thread.submit(_get)

    # -- for tests and the benchmark: what the "processor" actually did --

    def refunded(self) -> dict[str, int]:
        """idempotency key → amount of every refund made."""
        with self._lock:
            return dict(self._db.execute(
                "SELECT idempotency_key, amount_minor FROM refunds").fetchall())

    def approved_charges(self) -> dict[str, int]:
        """idempotency key → amount of every approved charge."""
        with self._lock:
            return dict(self._db.execute(
                "SELECT idempotency_key, amount_minor FROM charges WHERE status = 'approved'"
            ).fetchall())
