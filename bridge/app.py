"""The Litestar application factory: ``bridge.app:create_app`` (``uvicorn --factory`` or ``bridge api``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from arq.connections import ArqRedis
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from redis.exceptions import RedisError

from bridge import __version__
from bridge.api.auth import SECURITY_SCHEME, require_api_key
from bridge.api.deps import provide_redis, provide_settings, provide_store
from bridge.api.errors import handle_http_exception, handle_redis_error, handle_unexpected
from bridge.api.health import HealthController
from bridge.api.request import BridgeRequest
from bridge.api.watches import WatchController
from bridge.config import Settings, load_settings
from bridge.logs import configure_logging
from bridge.redis_url import connect
from bridge.store.redis_store import RedisStore

MAX_BODY_BYTES: Final = 64 * 1024
"""SPEC: request bodies are at most 64 kB."""


def _redis(settings: Settings) -> ArqRedis:
    """Connects lazily: the API starts (and answers 503 on /readyz) while Redis is down. A plain
    server or a Sentinel-managed master, with retries across a failover (:mod:`bridge.redis_url`)."""
    return connect(settings.redis_url)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    api_keys = tuple(key.reveal().encode() for key in settings.require_api_keys())

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        redis = _redis(settings)
        app.state.redis = redis
        app.state.store = RedisStore(redis, retention_s=settings.retention_s)
        try:
            yield
        finally:
            await redis.aclose(close_connection_pool=True)

    v1 = Router(
        path="/v1",
        route_handlers=[WatchController],
        guards=[require_api_key],
        security=[{SECURITY_SCHEME: []}],
    )
    return Litestar(
        route_handlers=[HealthController, v1],
        lifespan=[lifespan],
        state=State({"settings": settings, "api_keys": api_keys}),
        dependencies={
            "store": Provide(provide_store),
            "settings": Provide(provide_settings),
            "redis": Provide(provide_redis),
        },
        exception_handlers={
            HTTPException: handle_http_exception,
            RedisError: handle_redis_error,
            Exception: handle_unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="mpc-import-bridge",
            version=__version__,
            description="Watches Placewise MPC member imports and announces every bulk status change.",
            path="/schema",
            components=Components(
                security_schemes={
                    SECURITY_SCHEME: SecurityScheme(
                        type="http", scheme="bearer", description="A key from BRIDGE_API_KEYS"
                    )
                }
            ),
        ),
        request_max_body_size=MAX_BODY_BYTES,
        request_class=BridgeRequest,
        logging_config=None,
        debug=False,
    )
