"""When a failed job runs again: the retry policy, kept apart from the worker (as
procrastinate's ``RetryStrategy`` is) so each job kind can have its own."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryStrategy:
    """Exponential backoff with jitter and a cap.

    After attempt ``n`` fails (n counts from 1), the job waits
    ``min(max_delay, base_delay * factor ** (n - 1))`` seconds, less a random share of up to
    ``jitter`` of it, so jobs that failed together (a provider outage) don't all come back in
    the same instant. After ``max_attempts`` attempts there is no next one: the job is
    ``failed`` and keeps its last error for a person to read."""

    max_attempts: int = 5
    base_delay: float = 5.0  # seconds before the second attempt
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.2  # 0: exact delays; 0.2: up to 20% earlier

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("delays must be >= 0 and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a share of the delay, 0 <= jitter < 1")

    def ceiling(self, attempt: int) -> float:
        """The delay after ``attempt`` before jitter (the most it can be)."""
        if self.factor == 1 or attempt <= 1:
            return min(self.max_delay, self.base_delay)
        # Past the cap the exponent only overflows: stop growing once it is reached.
        delay = self.base_delay
        for _ in range(attempt - 1):
            delay *= self.factor
            if delay >= self.max_delay:
                return self.max_delay
        return delay

    def next_delay(self, attempt: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after failed attempt ``attempt``; None: no attempts left."""
        if attempt >= self.max_attempts:
            return None
        ceiling = self.ceiling(attempt)
        share = (rng or random).random() * self.jitter
        return ceiling * (1 - share)


# Fixed pause between attempts (callbacks: try again 15 minutes later, three times).
def fixed(delay: float, max_attempts: int) -> RetryStrategy:
    return RetryStrategy(max_attempts=max_attempts, base_delay=delay, factor=1.0,
                         max_delay=delay, jitter=0.0)
