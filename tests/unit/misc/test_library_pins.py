"""Overrides of library internals are written against one release: another one must be read first."""

from __future__ import annotations

from importlib import metadata

from bridge.redis_url import REDIS_PY_VERSION
from bridge.server import UVICORN_VERSION
from bridge.worker.arq_compat import ARQ_VERSION


def test_the_installed_arq_is_the_one_arq_compat_was_written_against() -> None:
    installed = metadata.version("arq")
    assert installed == ARQ_VERSION, (
        f"arq {installed} is installed; bridge/worker/arq_compat.py overrides internals of arq "
        f"{ARQ_VERSION}: read them again, then update ARQ_VERSION"
    )


def test_the_installed_uvicorn_is_the_one_the_draining_server_was_written_against() -> None:
    installed = metadata.version("uvicorn")
    assert installed == UVICORN_VERSION, (
        f"uvicorn {installed} is installed; bridge/server.py overrides internals of uvicorn "
        f"{UVICORN_VERSION}: read them again, then update UVICORN_VERSION"
    )


def test_the_installed_redis_py_is_the_one_the_prompt_parser_was_written_against() -> None:
    installed = metadata.version("redis")
    assert installed == REDIS_PY_VERSION, (
        f"redis-py {installed} is installed; bridge/redis_url.py extends the hiredis parser and the "
        f"connections' send of redis-py {REDIS_PY_VERSION}: read it again, then update REDIS_PY_VERSION"
    )
