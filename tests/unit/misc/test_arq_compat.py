"""bridge.worker.arq_compat is written against one arq release: another one must be read first."""

from __future__ import annotations

from importlib import metadata

from bridge.worker.arq_compat import ARQ_VERSION


def test_the_installed_arq_is_the_one_arq_compat_was_written_against() -> None:
    installed = metadata.version("arq")
    assert installed == ARQ_VERSION, (
        f"arq {installed} is installed; bridge/worker/arq_compat.py overrides internals of arq "
        f"{ARQ_VERSION}: read them again, then update ARQ_VERSION"
    )
