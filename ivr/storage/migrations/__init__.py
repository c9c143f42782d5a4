"""Alembic migrations, driven programmatically (no alembic.ini): see ivr.storage.migrate."""
