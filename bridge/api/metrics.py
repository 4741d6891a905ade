"""``GET /metrics``: the API's HTTP metrics, the workers' totals and live gauges, for Prometheus.

The format follows the scraper's ``Accept`` header (``prometheus_client.exposition.choose_encoder``):
OpenMetrics when asked for, else the Prometheus text format, each with its own content type.

No auth: operators restrict it at the network (docs/operations.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from litestar import Controller, MediaType, Request, get
from litestar.response import Response
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from bridge.api.deps import RedisDep
from bridge.metrics import SharedMetrics, read_gauges, read_shared


class _Scrape(Collector):
    """This process's registry, then the shared metrics: one exposition, one ``# EOF``."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class MetricsController(Controller):
    tags = ["health"]

    @get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT, include_in_schema=True)
    async def metrics(self, request: Request[Any, Any, Any], redis: RedisDep) -> Response[bytes]:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        collectors: list[Collector] = [REGISTRY]
        # Redis away: the API's own metrics still tell the story (and /readyz says why).
        with contextlib.suppress(RedisError, OSError):
            collectors.append(SharedMetrics(await read_shared(redis), await read_gauges(redis)))
        # The content type as given: Litestar would append a second charset to a text/* media type.
        return Response(
            encoder(_Scrape(*collectors)), media_type=content_type, headers={"content-type": content_type}
        )
