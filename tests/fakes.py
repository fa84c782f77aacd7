"""Test doubles shared by several test files."""

from __future__ import annotations


class FakeTime:
    """A clock that only moves when the code under test sleeps, or when a test moves ``now``.

    Pass ``fake.clock`` and ``fake.sleep`` where the code takes a clock and a sleep, so that
    no test waits for real time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
