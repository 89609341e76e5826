"""The console's sign-in throttle, on a clock the test moves."""

from __future__ import annotations

from infra.console.sessions import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_a_minute_hold_a_name_until_the_oldest_is_a_minute_old() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock)
    for second in range(5):
        clock.now = 1000.0 + second
        assert throttle.retry_after("li-na") is None
        throttle.failed("li-na")
    assert throttle.retry_after("li-na") == 56  # the first failure, at 1000, ages out at 1060
    assert throttle.retry_after("wang") is None
    clock.now = 1060.0
    assert throttle.retry_after("li-na") is None


def test_made_up_names_by_the_thousand_are_forgotten_once_their_minute_has_passed() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock, names=100)
    for n in range(100):
        throttle.failed(f"nobody-{n}")
    clock.now += 61
    throttle.failed("li-na")
    assert len(throttle._failures) == 1
