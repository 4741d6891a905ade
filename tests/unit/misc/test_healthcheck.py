"""The image's HEALTHCHECK: what its container runs (from the main command line), how old a
worker's health record is, and a verdict on one line."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.healthcheck import Verdict, record_time, role_of


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


NOW = datetime(2026, 3, 1, 0, 0, 10)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("Mar-01 00:00:05 j_complete=1", datetime(2026, 3, 1, 0, 0, 5)),
        # No year in the record: the latest such time not after now (with a minute's leeway).
        ("Feb-28 23:59:50 j_complete=1", datetime(2026, 2, 28, 23, 59, 50)),
        ("Mar-01 00:00:50 j_complete=1", datetime(2026, 3, 1, 0, 0, 50)),
        ("Dec-31 23:59:59 j_complete=1", datetime(2025, 12, 31, 23, 59, 59)),
        ("Mar-02 00:00:00 j_complete=1", datetime(2025, 3, 2, 0, 0, 0)),
        # Feb-29 exists in neither 2026 nor 2025.
        ("Feb-29 12:00:00 j_complete=1", None),
        ("", None),
        ("garbage", None),
        ("Mar-01 25:00:00 j_complete=1", None),
        ("\x00" * 100, None),
    ],
)
def test_the_time_of_a_health_record(record: str, expected: datetime | None) -> None:
    assert record_time(record, NOW) == expected


def test_a_leap_day_record_is_read_in_a_leap_year() -> None:
    assert record_time("Feb-29 12:00:00 j", datetime(2028, 2, 29, 12, 0, 30)) == datetime(2028, 2, 29, 12)


def test_a_verdict_is_one_line_whatever_its_reason() -> None:
    assert Verdict(False, "redis said\nError\r\n  twice").line() == "unhealthy: redis said Error twice"
    assert Verdict(True, "ok").line() == "healthy: ok"


def test_the_slack_socket_process_is_recognised() -> None:
    assert role_of(["tini", "--", "bridge", "slack-socket"]) == ("slack-socket", 0)
