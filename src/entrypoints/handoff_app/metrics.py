"""`GET /metrics`: what an operator watches, in Prometheus's text format (SPEC §13).

Two kinds of figures, so that `serve --workers N` answers the same from any process where it can:

- read from the store at scrape time (`handoff_escalations_total`, `handoff_deliveries_total`,
  `handoff_outbox_pending`, `handoff_outbox_oldest_pending_seconds`,
  `handoff_time_to_claim_seconds`, and `handoff_streams_open` where presence is kept in the
  database): the same from every process;
- kept by this process (`handoff_http_request_duration_seconds`, and `handoff_streams_open` where
  presence is in-process, i.e. one process on SQLite): Prometheus sums the processes it scrapes.

A standalone `handoff worker --metrics-port P` serves its heartbeat alone
(`serve_worker_metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handoff_core.figures import CLAIM_BUCKETS, StoreFigures
from handoff_core.services.delivery import DeliveryService

# The classic text format, which every Prometheus (and most other scrapers) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FiguresSource = Callable[[], Awaitable[StoreFigures]]
STREAM_SUFFIX = "/escalations/stream"
UNMATCHED = "unmatched"


class HeartbeatDelivery(DeliveryService):
    """The delivery service, noting when each worker pass of this process finished (a pass that
    fails notes nothing): the worker's heartbeat, for an alert when it stops."""

    last_pass: float | None = None  # seconds since the epoch

    async def run_once(self) -> int:
        done = await super().run_once()
        self.last_pass = time.time()
        return done


class ProcessMetrics:
    """What this process measures itself: request durations and the streams it holds open."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series: noise
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "handoff_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.streams_open = 0


class _StoreCollector(Collector):
    """Turns one reading of the store into metric families."""

    def __init__(
        self,
        figures: StoreFigures,
        now: datetime,
        local_streams: int,
        worker_last_pass: float | None,
    ) -> None:
        self._figures = figures
        self._now = now
        self._local_streams = local_streams
        self._worker_last_pass = worker_last_pass

    def collect(self) -> Iterator[Metric]:
        f = self._figures
        yield CounterMetricFamily(
            "handoff_escalations", "Escalations raised, every account", value=f.escalations
        )
        delivered = CounterMetricFamily(
            "handoff_deliveries",
            "Deliveries (notices to one recipient on one channel) by channel and current status",
            labels=["channel", "status"],
        )
        for (channel, status), count in sorted(f.deliveries.items()):
            delivered.add_metric([channel, status], count)
        yield delivered
        yield GaugeMetricFamily(
            "handoff_outbox_pending", "Deliveries waiting to be sent", value=f.pending
        )
        oldest = 0.0
        if f.oldest_pending_at is not None:
            oldest = max(0.0, (self._now - f.oldest_pending_at).total_seconds())
        yield GaugeMetricFamily(
            "handoff_outbox_oldest_pending_seconds",
            "Age of the oldest delivery still waiting to be sent (0 when none waits)",
            value=oldest,
        )
        buckets = [
            (_bound(b), float(n)) for b, n in zip(CLAIM_BUCKETS, f.claim_buckets, strict=True)
        ]
        yield HistogramMetricFamily(
            "handoff_time_to_claim_seconds",
            "Time from an escalation being raised to its claim",
            buckets=[*buckets, ("+Inf", float(f.claims))],
            sum_value=f.claim_seconds_sum,
        )
        streams = f.streams_open if f.streams_open is not None else self._local_streams
        yield GaugeMetricFamily(
            "handoff_streams_open", "Live escalation streams open", value=streams
        )
        if self._worker_last_pass is not None:
            yield _heartbeat(self._worker_last_pass)


class _WorkerCollector(Collector):
    """A standalone worker's own figure: its heartbeat (the store's figures come from any
    `serve`'s /metrics, the same from every process)."""

    def __init__(self, delivery: HeartbeatDelivery) -> None:
        self._delivery = delivery

    def collect(self) -> Iterator[Metric]:
        if self._delivery.last_pass is not None:
            yield _heartbeat(self._delivery.last_pass)


def _heartbeat(last_pass: float) -> Metric:
    """`handoff_worker_last_pass_timestamp_seconds`, from `serve` and a standalone worker alike."""
    return GaugeMetricFamily(
        "handoff_worker_last_pass_timestamp_seconds",
        "When this process's delivery worker last finished a pass (Unix time)",
        value=last_pass,
    )


def serve_worker_metrics(delivery: DeliveryService, host: str, port: int) -> Callable[[], None]:
    """Serve `GET /metrics` for a standalone `handoff worker` on host:port, from a thread of
    prometheus-client's own: the worker's heartbeat,
    `handoff_worker_last_pass_timestamp_seconds`, for an alert when it stops. Returns what stops
    it. Raises OSError when the address cannot be bound."""
    registry = CollectorRegistry(auto_describe=False)
    if isinstance(delivery, HeartbeatDelivery):
        registry.register(_WorkerCollector(delivery))
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def _bound(seconds: float) -> str:
    return str(float(seconds))


async def exposition(
    process: ProcessMetrics, figures: FiguresSource, now: datetime, delivery: DeliveryService
) -> tuple[bytes, str]:
    """The body and content type of one scrape. Raises what the figures' source raises
    (StorageUnavailable when the store cannot be read)."""
    last_pass = delivery.last_pass if isinstance(delivery, HeartbeatDelivery) else None
    store = CollectorRegistry(auto_describe=False)
    store.register(_StoreCollector(await figures(), now, process.streams_open, last_pass))
    return generate_latest(store) + generate_latest(process.registry), CONTENT_TYPE


def template(scope: Scope) -> str:
    """The matched route's path template, whole (`/api/v1/handoffs/{handoff_id}/claim`).

    A route of an included router knows its template without the router's prefix; the prefix is
    what the request's path has before the part the route matched.
    """
    inner = getattr(scope.get("route"), "path", None)
    if not isinstance(inner, str):
        return UNMATCHED
    try:
        rendered = inner.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return inner
    path = str(scope.get("path", ""))
    return path[: len(path) - len(rendered)] + inner if path.endswith(rendered) else inner


class MeasureRequests:
    """Times every request by its route template (never the raw path, whose ids would make a
    series per resource) and counts the streams this process holds open."""

    def __init__(self, app: ASGIApp, process: ProcessMetrics) -> None:
        self.app = app
        self.process = process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers
        is_stream = str(scope.get("path", "")).endswith(STREAM_SUFFIX)
        counted = False

        async def timed(message: Message) -> None:
            nonlocal status, counted
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if is_stream and status == 200:
                    self.process.streams_open += 1
                    counted = True
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            if counted:
                self.process.streams_open -= 1
            self.process.request_seconds.labels(
                template(scope), scope["method"], str(status)
            ).observe(time.perf_counter() - started)
