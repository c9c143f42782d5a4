"""Persistence: SQLAlchemy models, the engine/session factory and Alembic migrations.

Storage holds the tables: accounts, numbers, statements, cards on file, payments and an
append-only audit log (models.py), and the phone side's records, one row per call and the
callbacks promised to callers (calls.py). It imports nothing above itself: no protocols
(agi, ami), no flows, no services; they use it, never the reverse.
"""
