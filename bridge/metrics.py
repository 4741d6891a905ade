"""Metrics: workers count in memory and add their counts to Redis; the API exports them.

Workers are many and short-lived (scaled on queue depth), so rather than each exposing a port,
every worker adds its counters to one Redis hash every :data:`FLUSH_EVERY_S` seconds and the
API's ``/metrics`` exports that hash (:class:`SharedMetrics`), next to its own HTTP metrics and
gauges read from Redis at scrape time, in the format the scraper asks for (Prometheus text or
OpenMetrics). The worker counters are therefore totals over all
workers (and survive worker restarts); with several API replicas every replica exports the same
totals — aggregate them with ``max``, not ``sum``.

Labels are bounded: outcomes, endpoints, sinks and event types are closed sets.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, Final, get_args

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from bridge.core.catalog import EVENT_TYPES
from bridge.core.model import FailureKind
from bridge.logs import get_logger
from bridge.store import keys
from bridge.store.redis_store import active_watches

PREFIX: Final = "bridge_"
FLUSH_EVERY_S: Final = 5.0
LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

POLL_OUTCOMES: Final = ("ok", "crashed", *get_args(FailureKind))
"""``crashed``: a poll that failed on something unexpected (logged with its traceback)."""
UPSTREAM_ENDPOINTS: Final = ("bulk", "import")
SINKS: Final = ("log", "slack", "webhook")
DELIVERY_OUTCOMES: Final = ("delivered", "retry", "failed")

HELP: Final = {
    "polls_total": ("counter", "Polls of an import, by outcome of its main request."),
    "upstream_requests_total": ("counter", "Requests to MPC, by endpoint and outcome."),
    "upstream_request_duration_seconds": ("histogram", "Duration of requests to MPC, by endpoint."),
    "events_total": ("counter", "Events recorded, by type."),
    "deliveries_total": ("counter", "Delivery attempts, by sink and outcome."),
    "commits_superseded_total": ("counter", "Polls whose commit lost the compare-and-set to another worker."),
    "loop_lag_seconds": (
        "summary",
        "How late the poll loop's timer fired, each time a worker measured it (while polls run).",
    ),
}
"""Worker metrics: name (without prefix) -> (type, help)."""

log = get_logger("bridge.metrics")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


def _bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else "other"


class WorkerMetrics:
    """Counters of one worker process, added to Redis from time to time.

    Counting is a dict increment on the hot path; sample names are formatted at flush time.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._latency: dict[tuple[str, int], int] = defaultdict(int)
        """(endpoint, index of the first bucket the duration fits) -> observations."""
        self._latency_sum: dict[str, float] = defaultdict(float)
        self._pending: dict[str, float] = defaultdict(float)
        """Formatted samples a failed flush keeps for the next one."""

    def _add(self, name: str, *labels: tuple[str, str], amount: float = 1.0) -> None:
        self._counts[(name, labels)] += amount

    def poll(self, outcome: str) -> None:
        self._add("polls_total", ("outcome", _bounded(outcome, POLL_OUTCOMES)))

    def upstream(self, endpoint: str, outcome: str, seconds: float) -> None:
        endpoint = _bounded(endpoint, UPSTREAM_ENDPOINTS)
        self._add(
            "upstream_requests_total", ("endpoint", endpoint), ("outcome", _bounded(outcome, POLL_OUTCOMES))
        )
        self._latency[(endpoint, bisect.bisect_left(LATENCY_BUCKETS_S, seconds))] += 1
        self._latency_sum[endpoint] += seconds

    def event(self, event_type: str) -> None:
        self._add("events_total", ("type", _bounded(event_type, EVENT_TYPES)))

    def delivery(self, sink: str, outcome: str) -> None:
        self._add(
            "deliveries_total",
            ("sink", _bounded(sink, SINKS)),
            ("outcome", _bounded(outcome, DELIVERY_OUTCOMES)),
        )

    def superseded(self) -> None:
        self._add("commits_superseded_total")

    def loop_lag(self, seconds: float) -> None:
        self._add("loop_lag_seconds_sum", amount=max(0.0, seconds))
        self._add("loop_lag_seconds_count")

    def take(self) -> dict[str, float]:
        """Every sample counted since the last take, formatted, and forget them."""
        samples, self._pending = self._pending, defaultdict(float)
        for (name, labels), amount in self._counts.items():
            samples[PREFIX + name + _labels(**dict(labels))] += amount
        histogram = PREFIX + "upstream_request_duration_seconds"
        for endpoint in {e for e, _ in self._latency}:
            cumulative = 0
            for index, bound in enumerate((*LATENCY_BUCKETS_S, math.inf)):
                cumulative += self._latency.get((endpoint, index), 0)
                if cumulative:
                    samples[f"{histogram}_bucket" + _labels(endpoint=endpoint, le=_number(bound))] += (
                        cumulative
                    )
            samples[f"{histogram}_count" + _labels(endpoint=endpoint)] += cumulative
            samples[f"{histogram}_sum" + _labels(endpoint=endpoint)] += self._latency_sum[endpoint]
        self._counts.clear()
        self._latency.clear()
        self._latency_sum.clear()
        return dict(samples)

    async def flush(self, redis: Any) -> None:
        """Add the counts since the last flush to the shared totals (kept if Redis is away)."""
        pending = self.take()
        if not pending:
            return
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for field, amount in pending.items():
                    pipe.hincrbyfloat(keys.METRICS, field, amount)
                await pipe.execute()
        except (RedisError, OSError):
            for field, amount in pending.items():
                self._pending[field] += amount

    async def run(self, redis: Any, every_s: float = FLUSH_EVERY_S) -> None:
        """Flush every ``every_s`` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(every_s)
                await self.flush(redis)
        finally:
            with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
                await self.flush(redis)


SAMPLE: Final = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?")
LABEL: Final = re.compile(r'(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if value == int(value) else repr(value)


def _parse_sample(sample: str) -> tuple[str, dict[str, str]] | None:
    """``bridge_polls_total{outcome="ok"}`` → ("bridge_polls_total", {"outcome": "ok"})."""
    match = SAMPLE.fullmatch(sample)
    if match is None:
        return None
    labels = {m.group("name"): m.group("value") for m in LABEL.finditer(match.group("labels") or "")}
    return match.group("name"), labels


class SharedMetrics(Collector):
    """The workers' totals (the shared hash) and the gauges read at scrape time, as metric families
    that ``prometheus_client`` renders in either exposition format.

    ``gauges`` maps a name (without prefix) to (help, value). Samples of names this version does
    not know (written by another version of the workers) are left out.
    """

    def __init__(self, samples: dict[str, float], gauges: dict[str, tuple[str, float]]) -> None:
        self._samples = samples
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        parsed: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for sample, value in sorted(self._samples.items()):
            found = _parse_sample(sample)
            if found is not None:
                parsed[found[0]].append((found[1], value))
        for name, (kind, text) in HELP.items():
            full = PREFIX + name
            if kind == "histogram":
                yield self._histogram(full, text, parsed)
                continue
            if kind == "summary":
                yield SummaryMetricFamily(
                    full,
                    text,
                    count_value=int(sum(value for _, value in parsed.get(f"{full}_count", []))),
                    sum_value=sum(value for _, value in parsed.get(f"{full}_sum", [])),
                )
                continue
            rows = parsed.get(full, [])
            label_names = list(rows[0][0]) if rows else []
            family = CounterMetricFamily(full, text, labels=label_names)
            for labels, value in rows:
                if set(labels) == set(label_names):
                    family.add_metric([labels[n] for n in label_names], value)
            yield family
        for name, (text, value) in self._gauges.items():
            yield GaugeMetricFamily(PREFIX + name, text, value=value)

    @staticmethod
    def _histogram(
        full: str, text: str, parsed: dict[str, list[tuple[dict[str, str], float]]]
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(full, text, labels=["endpoint"])
        buckets: dict[str, dict[float, float]] = defaultdict(dict)
        for labels, value in parsed.get(f"{full}_bucket", []):
            with contextlib.suppress(KeyError, ValueError):
                buckets[labels["endpoint"]][float(labels["le"])] = value
        sums = {labels.get("endpoint"): value for labels, value in parsed.get(f"{full}_sum", [])}
        for endpoint in sorted(buckets):
            # A flush leaves out the lowest buckets while they are empty: they count 0.
            stored = buckets[endpoint]
            cumulative = 0.0
            rows: list[tuple[str, float]] = []
            for bound in (*LATENCY_BUCKETS_S, math.inf):
                cumulative = max(cumulative, stored.get(bound, 0.0))
                rows.append(("+Inf" if math.isinf(bound) else repr(float(bound)), cumulative))  # canonical
            family.add_metric([endpoint], rows, sum_value=sums.get(endpoint, 0.0))
        return family


async def read_shared(redis: Any) -> dict[str, float]:
    raw = await redis.hgetall(keys.METRICS)
    return {
        (k.decode() if isinstance(k, bytes) else k): float(v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


async def read_gauges(redis: Any) -> dict[str, tuple[str, float]]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.OUTBOX)
        pipe.zcard(keys.QUEUE)
        pipe.zcount(keys.OUTBOX, "-inf", int(time.time() * 1000))
        pipe.zcard(keys.SCHEDULE)
        pipe.zcard(keys.INFLIGHT)
        outbox, queue, due, scheduled, inflight = await pipe.execute()
    active = await active_watches(redis)
    return {
        "outbox_depth": ("Events recorded for a destination and not yet delivered.", outbox),
        "queue_depth": (
            "Jobs in the arq queue: Slack follow-ups and the sweeper (due now or deferred).",
            queue,
        ),
        "queue_due_depth": (
            "Deliveries due now that no worker holds (the signal to scale workers on).",
            due,
        ),
        "active_watches": ("Watches in state active.", active),
        "scheduled_imports": ("Imports waiting for their next poll.", scheduled),
        "inflight_imports": ("Imports a worker is polling right now.", inflight),
    }
