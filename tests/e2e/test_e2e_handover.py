"""e2e.handover: the plan of disruptions and what breaks the promises."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.handover import DISRUPTIONS, plan_replicas, problems


def test_the_default_plan_goes_2_1_2() -> None:
    assert DISRUPTIONS == ("rollout", "scale-down", "scale-up", "delete", "crash")
    assert plan_replicas(DISRUPTIONS, 2) == [2, 1, 2, 2, 2]


def test_plans_that_cannot_run_are_refused() -> None:
    with pytest.raises(ValueError, match="no replica"):
        plan_replicas(("scale-down", "scale-down"), 2)
    with pytest.raises(ValueError, match="unknown disruption"):
        plan_replicas(("reboot",), 2)


def run(lost: int, duplicates: int, p99_ms: float = 300, max_ms: float = 900) -> dict[str, Any]:
    before_crash = {"count": 100, "p50_ms": 50, "p99_ms": p99_ms, "max_ms": max_ms}
    return {"lost": lost, "duplicates": duplicates, "events": 100, "before_crash": before_crash}


def test_problems_are_loss_anywhere_and_duplicates_in_exactly_once() -> None:
    assert problems({"at_least_once": run(0, 7), "exactly_once": run(0, 0)}) == []
    assert problems({"at_least_once": run(2, 0)}) == ["at_least_once: 2 of 100 results lost"]
    assert problems({"exactly_once": run(0, 1)}) == [
        "exactly_once: 1 duplicates visible to read_committed"
    ]


def test_at_least_once_promises_a_bounded_wait_up_to_the_first_crash() -> None:
    limits = {"max_wait_s": 5.0, "p99_s": 2.0}
    assert problems({"at_least_once": run(0, 0, 1900, 4900)}, **limits) == []
    assert problems({"at_least_once": run(0, 0, 1900, 5100)}, **limits) == [
        "at_least_once: an event waited 5.1 s (more than 5 s)"
    ]
    assert problems({"at_least_once": run(0, 0, 2100, 4000)}, **limits) == [
        "at_least_once: p99 2.10 s (more than 2 s)"
    ]
    # Exactly-once's latency is reported, not held to the at-least-once promise.
    assert problems({"exactly_once": run(0, 0, 9000, 30000)}, **limits) == []
    # Without limits (the default) only loss and duplicates count.
    assert problems({"at_least_once": run(0, 0, 9000, 30000)}) == []
