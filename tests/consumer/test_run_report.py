"""What `classify` prints for a person (consumer/run_report.py): species only, "no bird
recognised" for the no-bird class, tiny scores as <0.1%, no 0.00% padding, per-image timings,
and a summary whose figures measure what they name."""

from __future__ import annotations

from consumer.run_report import RunStats, format_result, format_score, format_summary, one_line
from consumer.testing import fake_model
from schemas import ErrorCode, Prediction, PredictionResult

TIMINGS = {"fetch_wait": 1.0, "fetch": 12.4, "decode_wait": 2.0, "decode": 3.6, "queue": 1.0}


def result(scores: list[float], background: float | None = None) -> PredictionResult:
    predictions = [
        Prediction(label_id=i, label=f"Species {i}", score=s) for i, s in enumerate(scores)
    ]
    bg = (
        None
        if background is None
        else Prediction(label_id=964, label="background", score=background)
    )
    return PredictionResult.ok(
        "1", "http://x/a.jpg", predictions, "m", {**TIMINGS, "inference": 20.2}, bg
    )


def test_scores_under_a_tenth_of_a_percent_are_not_rounded_to_zero() -> None:
    assert format_score(0.9765) == "97.65%"
    assert format_score(0.001) == "0.10%"
    assert format_score(0.0004) == "<0.1%"


def test_species_are_listed_without_zero_padding() -> None:
    text = format_result(result([0.95, 0.0004, 0.0], background=0.01))

    assert "1. Species 0" in text
    assert "2. Species 1" in text
    assert "<0.1%" in text
    assert "Species 2" not in text  # a score of exactly 0 is not a candidate
    assert "0.00%" not in text
    assert "no bird" not in text
    assert "queued 4 ms, fetched 12 ms, decoded 4 ms, classified 20 ms" in text


def test_no_bird_is_said_in_words_with_the_closest_species() -> None:
    text = format_result(result([0.2, 0.1, 0.0], background=0.65))

    lines = text.splitlines()
    assert lines[1] == "    no bird recognised (65.00% no bird)"
    assert lines[2] == "    closest species:"
    assert "background" not in text


def test_no_species_at_all_leaves_only_no_bird() -> None:
    text = format_result(result([0.0, 0.0, 0.0], background=0.996))

    assert text.splitlines()[1:] == [
        "    no bird recognised (99.60% no bird)",
        "    queued 4 ms, fetched 12 ms, decoded 4 ms, classified 20 ms",
    ]


def test_errors_keep_their_code_and_message() -> None:
    failed = PredictionResult.failed("2", "http://x/b", ErrorCode.HTTP_STATUS, "HTTP 404", "m")

    assert format_result(failed) == "[2] http://x/b\n    error http_status: HTTP 404\n"


def test_the_summary_sums_the_image_stages_it_names() -> None:
    stats = RunStats(started=0.0)
    for seconds in (0.1, 0.3):
        stats.stage("fetch", seconds)
        stats.stage("decode", seconds / 10)
    stats.stage("fetch_wait", 5.0)  # waiting is not fetching
    stats.batch(2, 0.25)
    stats.statuses.update(["ok", "ok", "error"])

    text = format_summary(fake_model(), stats, total=1.5)

    assert "image fetches       0.400 s  (summed over 2 image(s), slowest 0.300 s)" in text
    assert "image decodes       0.040 s  (summed over 2 image(s), slowest 0.030 s)" in text
    assert "inference           0.250 s  (1 batch(es))" in text
    assert "images: 2 ok, 1 failed" in text
    assert "since start" not in text.replace("since process start", "")


def test_one_line_for_the_results_command() -> None:
    assert one_line(result([0.7, 0.0004, 0.0], background=0.1)) == (
        "Species 0 70.00%, Species 1 <0.1%"
    )
    assert one_line(result([0.0, 0.0, 0.0], background=0.996)) == "no bird recognised (99.60%)"
    assert one_line(result([0.2, 0.0, 0.0], background=0.7)) == (
        "no bird recognised (70.00%); closest: Species 0 20.00%"
    )
    assert (
        one_line(result([0.5, 0.2, 0.1])) == "Species 0 50.00%, Species 1 20.00%, Species 2 10.00%"
    )
