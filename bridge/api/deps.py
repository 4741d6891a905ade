"""Dependencies the routes receive (built once in the app's lifespan, kept on ``app.state``)."""

from __future__ import annotations

from typing import Any, TypeAlias

from litestar.datastructures import State
from litestar.di import NamedDependency

from bridge.config import Settings
from bridge.delivery.model import Dispatch
from bridge.store.redis_store import RedisStore


async def provide_store(state: State) -> RedisStore:
    store: RedisStore = state.store
    return store


async def provide_settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


async def provide_redis(state: State) -> Any:
    return state.redis


async def provide_dispatch(state: State) -> Dispatch:
    dispatch: Dispatch = state.dispatch
    return dispatch


StoreDep: TypeAlias = NamedDependency[RedisStore]
SettingsDep: TypeAlias = NamedDependency[Settings]
RedisDep: TypeAlias = NamedDependency[Any]
DispatchDep: TypeAlias = NamedDependency[Dispatch]
