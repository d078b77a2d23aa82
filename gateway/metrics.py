"""The gateway's figures for the metrics endpoint (orchestrio.metrics, registered in
GatewayConfig.ready): each instance's proxied requests, as counters and a latency histogram.

Read from `RequestMetricsTotal` (monotonic totals the flush adds to), so they are as fresh as the
last flush (REQUEST_METRICS_FLUSH_SECONDS) and every web process reports the same values.
Cardinality is capped: only instances with traffic in the last hour, at most
METRICS_INSTANCE_SERIES_LIMIT of them (the most recently used first), each with 2 + 2 + 19
series (the histogram's 17 power-of-two bounds, 1 ms … 65.5 s, plus +Inf, sum and count —
coarser than the stored buckets, which nest in them exactly)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from . import histogram
from .models import RequestMetricsTotal

ACTIVE = timedelta(hours=1)
# Every 4th stored bound (1, 2, 4 … 65536 ms): a stored bucket never straddles one of them.
EXPOSED = tuple(range(0, histogram.BOUNDED, histogram.STEPS_PER_DOUBLING))


def _buckets(hist: list[int]) -> tuple[list[tuple[str, float]], float]:
    counts = histogram.merge(hist, None)
    cumulative, out, estimate = 0, [], 0.0
    exposed = iter(EXPOSED)
    bound = next(exposed)
    for index, value in enumerate(counts):
        while bound is not None and index > bound:
            out.append((f"{histogram.UPPER[bound] / 1000:g}", cumulative))
            bound = next(exposed, None)
        cumulative += value
        # The sum is estimated from bucket midpoints (the exact sum is not kept).
        low = histogram.lower_bound(index)
        estimate += value * (low if index >= histogram.BOUNDED else (low + histogram.upper_bound(index)) / 2)
    while bound is not None:
        out.append((f"{histogram.UPPER[bound] / 1000:g}", cumulative))
        bound = next(exposed, None)
    out.append(("+Inf", cumulative))
    return out, estimate / 1000


def database_figures() -> list:
    rows = list(
        RequestMetricsTotal.objects.filter(last_request_at__gte=timezone.now() - ACTIVE)
        .order_by("-last_request_at")
        .values_list("instance__instance_id", "instance__tenant_id", "count", "errors_upstream", "errors_gateway", "histogram")[
            : settings.METRICS_INSTANCE_SERIES_LIMIT
        ]
    )
    requests = CounterMetricFamily(
        "orchestrio_instance_requests", "Requests the gateway and tunnel forwarded to the instance.", labels=["instance", "tenant"]
    )
    errors = CounterMetricFamily(
        "orchestrio_instance_request_errors",
        "Failed proxied requests: 5xx from the instance (source=upstream), 502/504 from the gateway (source=gateway).",
        labels=["instance", "tenant", "source"],
    )
    latency = HistogramMetricFamily(
        "orchestrio_instance_request_duration_seconds",
        "Time to the instance's first byte of proxied requests (sum estimated from bucket midpoints).",
        labels=["instance", "tenant"],
    )
    for instance_id, tenant_id, count, errors_upstream, errors_gateway, hist in rows:
        requests.add_metric([instance_id, tenant_id], count)
        errors.add_metric([instance_id, tenant_id, "upstream"], errors_upstream)
        errors.add_metric([instance_id, tenant_id, "gateway"], errors_gateway)
        buckets, total = _buckets(hist)
        latency.add_metric([instance_id, tenant_id], buckets, total)
    return [requests, errors, latency]
