"""``GET /metrics``: Prometheus text — the API's HTTP metrics, the workers' totals, live gauges.

No auth: operators restrict it at the network (docs/operations.md).
"""

from __future__ import annotations

import contextlib
from typing import Final

from litestar import Controller, MediaType, get
from litestar.response import Response
from prometheus_client import REGISTRY, generate_latest
from redis.exceptions import RedisError

from bridge.api.deps import RedisDep
from bridge.metrics import read_gauges, read_shared, render_shared

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class MetricsController(Controller):
    tags = ["health"]

    @get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT, include_in_schema=True)
    async def metrics(self, redis: RedisDep) -> Response[bytes]:
        text = generate_latest(REGISTRY)
        # Redis away: the API's own metrics still tell the story (and /readyz says why).
        with contextlib.suppress(RedisError, OSError):
            text += render_shared(await read_shared(redis), await read_gauges(redis)).encode()
        return Response(text, media_type=CONTENT_TYPE)
