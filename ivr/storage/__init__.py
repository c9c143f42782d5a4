"""Persistence: SQLAlchemy models, the engine/session factory and Alembic migrations.

Storage knows nothing of telephony: it holds accounts, numbers, statements, cards on file,
payments and an append-only audit log.
"""
