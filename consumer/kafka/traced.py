"""Trace context on the outcomes: each gets a `produce` span, child of its input record's
`process` span, whose context goes into its headers; both spans end when it is durable."""

from __future__ import annotations

from dataclasses import replace

from consumer import tracing
from consumer.kafka.outcomes import Outcome


def traced(outcome: Outcome) -> Outcome:
    """`outcome` with a started produce span, its headers carrying that span's context."""
    span = tracing.start_produce(outcome.ref.span, outcome.topic)
    return replace(outcome, headers=tracing.with_context(outcome.headers, span), trace=span)


def durable(outcome: Outcome) -> None:
    """The outcome is acknowledged (or committed): end its spans with what it became."""
    if outcome.trace is not None:
        outcome.trace.end()
    tracing.end_process(outcome.ref.span, outcome.kind, outcome.code)


def abandoned(outcome: Outcome, reason: str) -> None:
    """The outcome will not be written by this member (revoked, or the member fails)."""
    if outcome.trace is not None:
        tracing.fail(outcome.trace, reason)
    tracing.end_process(outcome.ref.span, "abandoned", error=reason)
