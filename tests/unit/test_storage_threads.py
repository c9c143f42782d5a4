"""StorageThreads: results and exceptions come back to the awaiting task; a cancelled
waiter does not stop the job or the thread; shutdown lets queued jobs finish."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ivr.storage.threads import StorageThreads


async def test_results_exceptions_and_order_on_one_thread():
    threads = StorageThreads(1, "test-storage")
    seen: list[int] = []
    try:
        futs = [threads.submit(seen.append, i) for i in range(50)]
        await asyncio.gather(*futs)
        assert seen == list(range(50))
        assert await threads.submit(lambda: threading.current_thread().name) == "test-storage_0"
        with pytest.raises(ZeroDivisionError):
            await threads.submit(lambda: 1 / 0)
        assert await threads.submit(sum, [1, 2, 3]) == 6  # the thread survived the error
    finally:
        await asyncio.to_thread(threads.shutdown)


async def test_cancelled_waiter_does_not_stop_the_job():
    threads = StorageThreads(1, "test-storage")
    done = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        done.set()
        return "finished"

    try:
        fut = threads.submit(slow)
        await asyncio.sleep(0.05)
        fut.cancel()
        assert await threads.submit(lambda: "next") == "next"
        assert done.is_set()
    finally:
        await asyncio.to_thread(threads.shutdown)


async def test_shutdown_finishes_queued_jobs_then_refuses_new_ones():
    threads = StorageThreads(2, "test-storage")
    ran: list[int] = []
    futs = [threads.submit(lambda i=i: (time.sleep(0.01), ran.append(i))) for i in range(10)]
    await asyncio.to_thread(threads.shutdown)
    assert sorted(ran) == list(range(10))
    await asyncio.gather(*futs)
    with pytest.raises(RuntimeError, match="shut down"):
        threads.submit(print)
