"""e2e.handover: the plan of disruptions and what breaks the promises."""

from __future__ import annotations

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


def run(lost: int, duplicates: int) -> dict[str, int]:
    return {"lost": lost, "duplicates": duplicates, "events": 100}


def test_problems_are_loss_anywhere_and_duplicates_in_exactly_once() -> None:
    assert problems({"at_least_once": run(0, 7), "exactly_once": run(0, 0)}) == []
    assert problems({"at_least_once": run(2, 0)}) == ["at_least_once: 2 of 100 results lost"]
    assert problems({"exactly_once": run(0, 1)}) == [
        "exactly_once: 1 duplicates visible to read_committed"
    ]
