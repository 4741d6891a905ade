"""Liveness and readiness, without auth (probes and load balancers call them)."""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec
from litestar import Controller, get
from litestar.openapi import ResponseSpec
from litestar.response import Response
from redis.exceptions import RedisError

from bridge.api.deps import RedisDep

READY_TIMEOUT_S: Final = 2.0


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    redis: str | None = None


class HealthController(Controller):
    tags = ["health"]

    @get("/livez", summary="Liveness: the process answers", sync_to_thread=False)
    def livez(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        summary="Readiness: Redis answers (503 otherwise)",
        responses={503: ResponseSpec(data_container=Health, description="Redis does not answer")},
    )
    async def readyz(self, redis: RedisDep) -> Response[Health]:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await redis.ping()
        except (RedisError, OSError, TimeoutError):
            return Response(Health(status="unavailable", redis="unreachable"), status_code=503)
        return Response(Health(status="ok", redis="ok"))
