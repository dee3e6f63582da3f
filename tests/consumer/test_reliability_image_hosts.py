"""Fault injection: image hosts that hang, trickle bytes, reset connections, refuse them or do
not resolve, inside a Kafka run against the real broker.

Each bad image must end with its own error code once its fetch timeout (and retry) is spent;
the good images around it, in the same batches, must succeed; and the member must not be
thrown out of its group meanwhile (slow fetches never block the poll loop or its heartbeats).
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from structlog.testing import capture_logs

from consumer.testing.models import RED_CLASS
from consumer.testing.waiting import free_port, wait_until
from tests.conftest import LoopbackServer
from tests.consumer.service_support import ServiceSetupFactory, red_image
from tests.kafka_support import InProcessService
from tests.reliability_support import FaultyHost, record_figures

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FETCH_TIMEOUT_S = 2.0
FETCH_RETRIES = 1
EACH = 4  # bad images of each kind
GOOD = 80
# The hostile hosts would hold a connection this long: a fetch ending well before it was cut
# off by our timeout, not by the host.
HOST_LINGER_S = 60.0


async def test_bad_image_hosts_fail_their_images_alone_without_a_rebalance(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    setup = await service_setup("hosts", partitions=3)
    good_url = red_image(http_server)
    settings = setup.settings(
        fetch_timeout_s=FETCH_TIMEOUT_S,
        fetch_retries=FETCH_RETRIES,
        session_timeout_ms=6000,
        max_batch_size=8,
    )
    refused_port = free_port()  # bound then released: nothing listens there
    async with FaultyHost(linger_s=HOST_LINGER_S, trickle_every_s=0.25) as host:
        bad: dict[str, tuple[str, str, str]] = {}  # id -> (kind, url, expected code)
        for i in range(EACH):
            for kind, url, code in [
                ("hang", host.url("hang", f"{i}.jpg"), "timeout"),
                ("trickle", host.url("trickle", f"{i}.jpg"), "timeout"),
                ("reset", host.url("reset", f"{i}.jpg"), "fetch_failed"),
                ("refused", f"http://127.0.0.1:{refused_port}/{i}.jpg", "fetch_failed"),
                ("dns", f"http://no-such-host-{i}.invalid/bird.jpg", "fetch_failed"),
            ]:
                bad[f"{kind}-{i}-{uuid.uuid4().hex[:6]}"] = (kind, url, code)
        good = [f"good-{i}-{uuid.uuid4().hex[:6]}" for i in range(GOOD)]
        # Interleaved: every bad image shares its partition and its batches with good ones.
        events: list[tuple[str, str]] = []
        bad_items = list(bad.items())
        for i, eid in enumerate(good):
            events.append((eid, good_url))
            if i < len(bad_items):
                events.append((bad_items[i][0], bad_items[i][1][1]))
        events.extend((eid, spec[1]) for eid, spec in bad_items[len(good) :])

        with capture_logs() as logs:
            service = await InProcessService.start(settings)
            try:
                await wait_until(lambda: len(service.owned) == 3, 60, "the partitions assigned")
                rebalances_before = service.sample("birdwatch_rebalances_total")
                owned_before = service.owned
                joined_at = len(logs)  # log lines of the initial join come before this
                await setup.produce_events(events)
                await setup.wait_for_results((eid for eid, _ in events), timeout_s=120)
                rebalances_after = service.sample("birdwatch_rebalances_total")
                owned_after = service.owned
                assert service.task is not None
                assert not service.task.done()
            finally:
                await service.stop()
        connections = dict(host.connections)
        held_open = {k: max(v) for k, v in host.open_s.items()}

    everything = await setup.results()
    results = {r["id"]: r for r in everything}
    per_id = Counter(r["id"] for r in everything)
    assert set(per_id) == {eid for eid, _ in events}
    assert max(per_id.values()) == 1
    for eid in good:
        assert results[eid]["status"] == "ok", results[eid]
        assert results[eid]["predictions"][0]["label_id"] == RED_CLASS
    seconds: dict[str, list[float]] = {}
    for eid, (kind, _, code) in bad.items():
        result = results[eid]
        assert result["status"] == "error", (kind, result)
        assert result["error"]["code"] == code, (kind, result["error"])
        total_s = result["timings_ms"]["total"] / 1000
        # Cut off by our limits, long before the host would have let go.
        assert total_s < HOST_LINGER_S / 2, (kind, total_s)
        seconds.setdefault(kind, []).append(total_s)
    timeouts = [results[e]["error"]["message"] for e, s in bad.items() if s[2] == "timeout"]
    assert all(f"within {FETCH_TIMEOUT_S:g} s" in m for m in timeouts)
    dns = [results[e]["error"]["message"] for e, s in bad.items() if s[0] == "dns"]
    assert all("resolve" in m for m in dns), dns
    # Each timed-out image was tried 1 + FETCH_RETRIES times, no more.
    assert connections["hang"] == connections["trickle"] == EACH * (1 + FETCH_RETRIES)
    # No rebalance: the member kept its partitions all along.
    assert rebalances_after == rebalances_before
    assert owned_after == owned_before
    assert not [e for e in logs[joined_at:] if e["event"] == "partitions_revoked"]

    record_figures(
        "image_host_faults",
        {
            "events": len(events),
            "good_images": GOOD,
            "faults_injected": len(bad),
            "fault": "image hosts that hang, trickle, reset, refuse or do not resolve",
            "fetch_timeout_s": FETCH_TIMEOUT_S,
            "fetch_retries": FETCH_RETRIES,
            "codes": {
                kind: results[next(e for e, s in bad.items() if s[0] == kind)]["error"]["code"]
                for kind in seconds
            },
            "seconds_to_error_max": {k: round(max(v), 2) for k, v in seconds.items()},
            "seconds_to_error_min": {k: round(min(v), 2) for k, v in seconds.items()},
            "host_connections": connections,
            "host_held_open_max_s": held_open,
            "good_ok": sum(results[e]["status"] == "ok" for e in good),
            "lost": 0,
            "duplicated": sum(n - 1 for n in per_id.values()),
            "rebalances_during_run": rebalances_after - rebalances_before,
        },
    )
