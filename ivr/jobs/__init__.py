"""Durable background jobs: work that survives a restart and runs once across workers.

A job is a row in the ``jobs`` table (ivr/storage/jobs.py): a kind, a JSON payload, when to
run it, and a lease while a worker holds it. :mod:`ivr.jobs.queue` defers, claims and
finishes them with plain SQL (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite one short
``BEGIN IMMEDIATE`` claim transaction), :mod:`ivr.jobs.retry` decides when a failed job runs
again, :mod:`ivr.jobs.worker` runs the kinds' handlers, renews leases and defers periodic
work by dedupe key. Job kinds live with their business (the reconcile pass in
ivr/services/reconcile.py, placing a callback in ivr/services/callbacks.py); the
composition root (ivr/app.py) registers them.

Why a table of our own rather than a library: StarPay runs embedded on SQLite and in
production on PostgreSQL, always on asyncio. procrastinate and pgqueuer are PostgreSQL-only,
APScheduler 4 (SQLAlchemy data stores on both) is still an alpha, huey's workers are not
asyncio, arq needs Redis. What we need is small: the four statements in queue.py and the
loop in worker.py. procrastinate's split of the retry policy from the worker, and its
periodic jobs deferred with a dedupe key, are the model.
"""
