"""consumer.testing.broker: which broker a test session uses, without starting any."""

from __future__ import annotations

import pytest

from consumer.testing import broker
from consumer.testing.broker import choose_broker

IMAGES = ("confluentinc/cp-kafka:7.6.0", "testcontainers/ryuk:0.8.1")


def choose(
    given: str = "", asked: str = "", docker: bool = True, present: tuple[str, ...] = IMAGES
) -> str:
    return choose_broker(
        given, asked, lambda: docker, lambda image: image in present, lambda: IMAGES
    )


def test_a_given_address_wins() -> None:
    assert choose(given="127.0.0.1:9094", asked="testcontainers") == "given"


def test_testcontainers_only_when_its_images_are_local() -> None:
    assert choose() == "testcontainers"
    # An engine that answers but cannot pull (no registry): the images are not there.
    assert choose(present=()) == "script"
    assert choose(present=IMAGES[:1]) == "script"
    assert choose(docker=False) == "script"


def test_explicit_choice_wins_over_detection() -> None:
    assert choose(asked="testcontainers", docker=False) == "testcontainers"
    assert choose(asked="script") == "script"
    with pytest.raises(ValueError, match="BIRDWATCH_TEST_KAFKA_BROKER"):
        choose(asked="docker")


def test_detection_does_not_ask_docker_for_images_it_does_not_need() -> None:
    asked: list[str] = []

    def present(image: str) -> bool:
        asked.append(image)
        return False

    assert choose_broker("", "", lambda: False, present, lambda: IMAGES) == "script"
    assert asked == []


def test_the_images_are_those_testcontainers_would_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core.config import testcontainers_config

    images = broker.testcontainers_images()
    assert images[0].startswith("confluentinc/cp-kafka:")
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    assert broker.testcontainers_images() == images[:1]
