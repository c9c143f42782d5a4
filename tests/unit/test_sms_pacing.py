"""Sends are paced per sender in segments per second: a long code at 1/s sends a
three-segment text, then waits three seconds before the next; other senders don't wait."""

from __future__ import annotations

from ivr.messaging.sending import SenderPacer


class Tick:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_one_segment_per_second_per_sender() -> None:
    tick = Tick()
    pacer = SenderPacer(1.0, clock=tick)
    assert pacer.reserve("+15550000001", 3) == 0.0
    assert pacer.wait_for("+15550000001") == 3.0
    assert pacer.reserve("+15550000001", 1) == 3.0  # booked after the first
    assert pacer.reserve("+15550000002", 1) == 0.0  # another sender: its own pace
    tick.t += 10
    assert pacer.wait_for("+15550000001") == 0.0
    assert pacer.reserve("+15550000001", 1) == 0.0


def test_a_faster_rate_and_no_limit() -> None:
    tick = Tick()
    pacer = SenderPacer(50.0, clock=tick)
    waits = [pacer.reserve("short", 1) for _ in range(100)]
    assert waits[0] == 0.0 and abs(waits[-1] - 99 / 50) < 1e-9
    unlimited = SenderPacer(0, clock=tick)
    assert {unlimited.reserve("x", 5) for _ in range(10)} == {0.0}
