"""The retry strategy: exponential backoff with jitter and a cap, for any attempt."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.jobs.retry import RetryStrategy, fixed

strategies = st.builds(
    RetryStrategy, max_attempts=st.integers(1, 50), base_delay=st.floats(0, 600),
    factor=st.floats(1, 10), max_delay=st.floats(0, 86400), jitter=st.floats(0, 0.99))


@given(strategies, st.integers(1, 200), st.integers(0, 2**32))
def test_the_delay_after_an_attempt_is_backoff_less_jitter_and_capped(
        s: RetryStrategy, attempt: int, seed: int) -> None:
    delay = s.next_delay(attempt, random.Random(seed))
    if attempt >= s.max_attempts:
        assert delay is None  # no attempts left: the job is failed, not retried
        return
    assert delay is not None
    exact = min(s.max_delay, s.base_delay * s.factor ** (attempt - 1)) \
        if attempt < 1000 else s.max_delay
    assert s.ceiling(attempt) == pytest.approx(exact, rel=1e-9, abs=1e-9)
    assert exact * (1 - s.jitter) - 1e-9 <= delay <= exact + 1e-9
    assert delay <= s.max_delay + 1e-9


@given(strategies, st.integers(1, 100))
def test_ceilings_never_shrink_from_one_attempt_to_the_next(s: RetryStrategy, n: int) -> None:
    assert s.ceiling(n) <= s.ceiling(n + 1) + 1e-9


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    s = RetryStrategy(max_attempts=10**9, base_delay=1, factor=2, max_delay=3600, jitter=0)
    assert s.next_delay(10**6) == 3600


def test_fixed_retries_and_bad_settings() -> None:
    f = fixed(900, max_attempts=3)
    assert [f.next_delay(n) for n in (1, 2, 3)] == [900, 900, None]
    for bad in ({"max_attempts": 0}, {"factor": 0.5}, {"jitter": 1.0}, {"base_delay": -1}):
        with pytest.raises(ValueError):
            RetryStrategy(**bad)  # type: ignore[arg-type]
