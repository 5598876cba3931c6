"""Prometheus metrics and OpenTelemetry spans for serve.

Metrics live in a registry of their own (one per app), so two apps in one
process never clash. Spans are made only when an OTLP endpoint is configured;
otherwise the tracer is OpenTelemetry's no-op one and costs nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass.targets import TargetResult


class Metrics:
    """The figures ``GET /metrics`` shows."""

    def __init__(self, state: Callable[[], tuple[bool, float | None]]) -> None:
        self.registry = CollectorRegistry()
        self._state = state
        r = self.registry
        active = Gauge(
            "breakglass_active", "1 while the system may run, 0 while halted", registry=r
        )
        active.set_function(lambda: 1.0 if self._state()[0] else 0.0)
        age = Gauge(
            "breakglass_confirmation_age_seconds",
            "Seconds since the deciding confirmation (-1 when never confirmed)",
            registry=r,
        )
        age.set_function(lambda: -1.0 if self._state()[1] is None else self._state()[1] or 0.0)
        self.halts = Counter(
            "breakglass_halts", "Halt requests by outcome", ["outcome"], registry=r
        )
        self.resumes = Counter(
            "breakglass_resumes", "Resume requests by outcome", ["outcome"], registry=r
        )
        self.target_results = Counter(
            "breakglass_target_results",
            "Target answers by target, change and outcome",
            ["target", "change", "outcome"],
            registry=r,
        )
        self.target_latency = Histogram(
            "breakglass_target_latency_seconds",
            "Time a target took to acknowledge a change",
            ["target", "change"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.first_ack = Histogram(
            "breakglass_halt_first_ack_seconds",
            "Time from a halt request to the first target's acknowledgement",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.denials = Counter(
            "breakglass_auth_denials", "Requests refused by reason", ["status"], registry=r
        )

    def target(self, result: TargetResult) -> None:
        """Count one target's answer."""
        change = "resume" if result.active else "halt"
        outcome = "acknowledged" if result.ok else "failed"
        self.target_results.labels(result.target, change, outcome).inc()
        if result.ok:
            self.target_latency.labels(result.target, change).observe(result.latency_ms / 1000)

    def render(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)


class Tracing:
    """Spans for halts, resumes and every target call, exported over OTLP/HTTP when configured."""

    def __init__(self, endpoint: str | None, service_name: str = "breakglass-serve") -> None:
        self.provider: Any = None
        self._tracer: Any = None
        if endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            self.provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5))
            )
            self._tracer = self.provider.get_tracer("breakglass.serve")

    def span(self, name: str, **attributes: Any) -> AbstractContextManager[Any]:
        """A span (a no-op without an endpoint); ``None`` attributes are left out."""
        if self._tracer is None:
            return nullcontext()
        attrs = {k.replace("_", "."): v for k, v in attributes.items() if v is not None}
        return self._tracer.start_as_current_span(name, attributes=attrs)  # type: ignore[no-any-return]

    def context(self) -> Any:
        """The current trace context, to carry onto another thread."""
        if self._tracer is None:
            return None
        from opentelemetry import context

        return context.get_current()

    def attach(self, ctx: Any) -> Callable[[], None]:
        """Make ``ctx`` current on this thread; returns the function that undoes it."""
        if ctx is None:
            return lambda: None
        from opentelemetry import context

        token = context.attach(ctx)
        return lambda: context.detach(token)

    def close(self) -> None:
        """Send what is buffered and stop."""
        if self.provider is not None:
            self.provider.shutdown()
