"""The image's HEALTHCHECK finds out what its container runs from the main command line."""

from __future__ import annotations

import pytest

from bridge.healthcheck import role_of


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["tini", "--", "bridge", "api", "--host", "0.0.0.0", "--port", "8080"], ("api", 8080)),
        (["tini", "--", "bridge", "api", "--port=9000"], ("api", 9000)),
        (["/usr/bin/tini", "--", "/opt/bridge/bin/bridge", "worker"], ("worker", 0)),
        (["tini", "--", "bridge", "simulator", "--host", "0.0.0.0"], ("simulator", 8081)),
        (["tini", "--", "bridge", "simulator", "--port", "9100"], ("simulator", 9100)),
        (["/sbin/docker-init", "--", "tini", "--", "bridge", "worker"], ("worker", 0)),
        (["python", "-m", "bridge", "worker"], ("worker", 0)),
        (["tini", "--", "arq", "workers.settings.WorkerSettings"], ("worker", 0)),
        (["uvicorn", "--factory", "bridge.app:create_app", "--port", "8000"], ("api", 8000)),
        (["tini", "--", "bridge"], ("api", 8080)),
        ([], ("api", 8080)),
    ],
)
def test_the_role_and_port_come_from_the_main_command(argv: list[str], expected: tuple[str, int]) -> None:
    assert role_of(argv) == expected
