"""Proven against a real Prometheus: the `prometheus` binary scrapes a real `birdwatch serve`
that processes events from the real broker (good photos, failing URLs, an invalid event, records
that are not events at all), and through Prometheus's HTTP API:

- every query of every dashboard panel returns data (a misspelt metric name returns none);
- every metric an alert selects has series, every alert evaluates without error, and each is
  in the state this traffic must give it: the error-ratio and dead-letter alerts pending (their
  thresholds are crossed, their `for` not yet over), all others inactive.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from consumer.testing.topics import Topics, create_topics, produce, produce_events
from consumer.testing.waiting import wait_until
from monitoring.paths import ALERT_RULES
from tests.conftest import LoopbackServer, TinyModels
from tests.images import GREEN, HTML_PAGE, RED, solid_jpeg
from tests.kafka_support import ServeProcess, serve_env, serve_model
from tests.monitoring.prometheus_server import PrometheusServer
from tests.monitoring.support import (
    alert_rules,
    dashboard_queries,
    grafana_to_promql,
    metric_names,
)

JOB = "birdwatch"
# Longer than the whole test: every rate sees all of its samples (Grafana would pick a few
# scrape intervals; the queries are the same).
RATE_WINDOW = "10m"
GOOD, HTTP_ERRORS, NOT_IMAGES, DEAD_LETTERS = 12, 3, 1, 10
# Error results: the failing downloads, the HTML page, and one invalid event with an id.
ERRORS = HTTP_ERRORS + NOT_IMAGES + 1
OUTCOMES = GOOD + ERRORS + DEAD_LETTERS
# 5/17 of the results are errors (> 5%) and 10 DLQ records in the 10-min window are 0.017/s
# (> 0.01/s): both alerts are pending; their `for` (10 and 5 min) outlasts the test.
EXPECTED_STATES = {
    "BirdwatchErrorResultsHigh": "pending",
    "BirdwatchDeadLetters": "pending",
}


async def _publish(bootstrap: str, names: Topics, server: LoopbackServer) -> None:
    red = server.add_bytes("/red.jpg", solid_jpeg(RED), "image/jpeg")
    green = server.add_bytes("/green.jpg", solid_jpeg(GREEN), "image/jpeg")
    missing = server.add_bytes("/missing.jpg", b"gone", "text/plain", status=404)
    page = server.add_bytes("/page.html", HTML_PAGE, "text/html")
    events = [(f"good-{i}", red if i % 2 else green) for i in range(GOOD)]
    events += [(f"missing-{i}", missing) for i in range(HTTP_ERRORS)]
    events += [(f"page-{i}", page) for i in range(NOT_IMAGES)]
    await produce_events(bootstrap, names.input, events)
    invalid = [(b"invalid-0", b'{"id": "invalid-0", "url": "not a url"}')]
    garbage = [(None, b"not an event %d" % i) for i in range(DEAD_LETTERS)]
    await produce(bootstrap, names.input, invalid + garbage)


async def test_dashboard_and_alerts_evaluate_on_a_real_prometheus(
    kafka_bootstrap: str, http_server: LoopbackServer, tiny_models: TinyModels, tmp_path: Path
) -> None:
    names = Topics.unique("prom")
    await create_topics(kafka_bootstrap, names.names, partitions=2)
    env = serve_env(
        kafka_bootstrap,
        names,
        serve_model(http_server, tiny_models),
        summary_interval_s=1,  # the lag and record-age gauges every second
    )
    serve = ServeProcess(env, tmp_path / "serve.log")
    try:
        await serve.wait_ready()
        async with PrometheusServer(
            tmp_path / "prometheus", JOB, [f"127.0.0.1:{serve.port}"], [ALERT_RULES]
        ) as prom:
            # Scraped before any record: every counter's series starts at 0 in Prometheus.
            async def scraped() -> bool:
                return bool(await prom.finite_values(f'birdwatch_ready{{job="{JOB}"}} == 1'))

            await wait_until(scraped, 30, "a scrape of the ready serve", step=0.5)
            started = time.monotonic()
            await _publish(kafka_bootstrap, names, http_server)

            async def all_outcomes_scraped() -> bool:
                values = await prom.finite_values(
                    f'sum(birdwatch_results_produced_total{{job="{JOB}"}}) '
                    f'+ sum(birdwatch_dlq_records_total{{job="{JOB}"}})'
                )
                return values == [OUTCOMES]

            await wait_until(all_outcomes_scraped, 90, f"{OUTCOMES} outcomes in Prometheus")
            took = time.monotonic() - started

            # The counters as Prometheus has them: the traffic is what the test says it is.
            errors = await prom.finite_values(
                f'sum(birdwatch_result_errors_total{{job="{JOB}"}}) by (code)'
            )
            assert sum(errors) == ERRORS
            by_code = {
                s["metric"]["code"]: float(s["value"][1])
                for s in await prom.query(f'birdwatch_result_errors_total{{job="{JOB}"}} > 0')
            }
            assert by_code == {
                "http_status": HTTP_ERRORS,
                "not_an_image": NOT_IMAGES,
                "invalid_event": 1,
            }

            # Every panel's every query returns data. The lag and record-age gauges are measured
            # every second, not at each record: give them a few scrapes to show up.
            empty: list[str] = []

            async def every_panel_has_data() -> bool:
                empty.clear()
                for query in dashboard_queries():
                    expr = grafana_to_promql(query.expr, JOB, RATE_WINDOW)
                    if not await prom.finite_values(expr):
                        empty.append(f"{query.panel} [{query.legend}]: {expr}")
                return not empty

            with contextlib.suppress(TimeoutError):
                await wait_until(every_panel_has_data, 30, "data in every panel", step=1)
            assert not empty, "panels without data:\n" + "\n".join(empty)
            # ... which a misspelt metric would not.
            assert not await prom.finite_values(
                grafana_to_promql(
                    'sum(rate(birdwatch_records_consumd_total{job=~"$job"}[$__rate_interval]))',
                    JOB,
                    RATE_WINDOW,
                )
            )

            # Every metric an alert selects has series from the serve.
            for rule in alert_rules():
                for name in metric_names(rule.expr):
                    series = await prom.query(f'{name}{{job="{JOB}"}}')
                    assert series, f"{rule.name}: no series of {name}"

            # Every alert evaluates, in the state this traffic gives it.
            expected = {
                rule.name: EXPECTED_STATES.get(rule.name, "inactive") for rule in alert_rules()
            }

            async def settled() -> bool:
                rules = await prom.alerting_rules()
                return {name: r["state"] for name, r in rules.items()} == expected

            try:
                await wait_until(settled, 30, "the expected alert states", step=0.5)
            finally:
                rules = await prom.alerting_rules()
            assert {name: r["state"] for name, r in rules.items()} == expected
            assert {name: r["health"] for name, r in rules.items()} == dict.fromkeys(expected, "ok")
            assert all(not r.get("lastError") for r in rules.values())
            print(f"{OUTCOMES} outcomes scraped {took:.1f} s after publishing")
        assert await serve.stop() == 0
    finally:
        serve.close()
