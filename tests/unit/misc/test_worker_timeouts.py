"""What a killed worker was running must come back soon: arq locks a job for its timeout + 10 s,
a delivery is leased for its timeout, its in-flight grace and 10 s."""

from __future__ import annotations

import pytest
from arq.worker import Worker

from bridge.config import ConfigError, load_settings
from bridge.wiring import worker_options
from bridge.worker.runtime import in_flight_grace
from bridge.worker.settings import delivery_lease_s

FERNET_KEY = "q0Yh0a5lYk7oQ1xJc6a1rP9sJpJ2c8U4pW1s5bW0dX8="
ARQ_LOCK_MARGIN_S = 10
"""arq keeps ``arq:in-progress:<job>`` for the longest function timeout plus this."""


async def test_a_killed_workers_delivery_is_locked_only_for_the_delivery_timeout() -> None:
    settings = load_settings(
        {"BRIDGE_SECRET_KEY": FERNET_KEY, "BRIDGE_DELIVERY_TIMEOUT_S": "5", "BRIDGE_WEBHOOK_TIMEOUT_S": "3"}
    )
    worker = Worker(**{**worker_options(settings), "handle_signals": False})
    try:
        # Before: the sweeper's cron had no timeout and counted as arq's default 300 s, so a job of
        # a SIGKILLed worker stayed locked 310 s whatever the delivery timeout.
        assert worker.in_progress_timeout_s == settings.delivery_timeout_s + ARQ_LOCK_MARGIN_S
    finally:
        await worker.pool.aclose()


def test_a_killed_workers_delivery_is_leased_for_its_timeout_grace_and_a_margin() -> None:
    settings = load_settings(
        {"BRIDGE_SECRET_KEY": FERNET_KEY, "BRIDGE_DELIVERY_TIMEOUT_S": "5", "BRIDGE_WEBHOOK_TIMEOUT_S": "3"}
    )
    assert delivery_lease_s(settings) == 5 + in_flight_grace(settings) + ARQ_LOCK_MARGIN_S


def test_the_delivery_timeout_defaults_to_a_minute_and_outlasts_a_webhook() -> None:
    assert load_settings({}).delivery_timeout_s == 60.0
    with pytest.raises(ConfigError, match="BRIDGE_DELIVERY_TIMEOUT_S: must be longer than"):
        load_settings({"BRIDGE_DELIVERY_TIMEOUT_S": "10", "BRIDGE_WEBHOOK_TIMEOUT_S": "15"})


@pytest.mark.parametrize(("drain_s", "arq_wait_s"), [(20.0, 15.0), (3.0, 1.5), (0.0, 0.0)])
def test_a_cancelled_delivery_finishes_its_send_within_the_drain_window(
    drain_s: float, arq_wait_s: float
) -> None:
    settings = load_settings({"BRIDGE_SECRET_KEY": FERNET_KEY, "BRIDGE_WORKER_DRAIN_S": str(drain_s)})
    assert worker_options(settings)["job_completion_wait"] == arq_wait_s
    assert arq_wait_s + in_flight_grace(settings) == drain_s


def test_arq_runs_only_slack_follow_ups_and_the_sweeper() -> None:
    options = worker_options(load_settings({"BRIDGE_SECRET_KEY": FERNET_KEY}))
    assert sorted(f.name for f in options["functions"]) == ["slack_followup"]  # deliveries: the outbox
    assert [c.name for c in options["cron_jobs"]] == ["cron:sweep"]
