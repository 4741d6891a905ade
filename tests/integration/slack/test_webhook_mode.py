"""Incoming-webhook mode (no bot token): one message per event, the same content rules."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from redis.asyncio import Redis

from bridge.delivery.model import SendResult
from bridge.delivery.service import RetryLater
from bridge.slack.notifier import HINTS
from bridge.slack.plain import message_text
from bridge.store import keys
from bridge_tools.slack_standin import RunningStandin
from mpc_simulator import SimulatorControl
from tests.builders import MEMBERS_ERRORS
from tests.integration.conftest import SLUG, outbox
from tests.integration.slack.conftest import IMPORT, SlackRig, watch_spec


@pytest.fixture
def webhook_rig(rig_factory: Callable[..., SlackRig], standin: RunningStandin) -> Callable[..., SlackRig]:
    def make(**extra: str) -> SlackRig:
        return rig_factory(
            BRIDGE_SLACK_BOT_TOKEN=None, BRIDGE_SLACK_WEBHOOK_URL=standin.webhook_url(), **extra
        )

    return make


async def test_every_event_is_one_webhook_message_and_nothing_else_is_called(
    webhook_rig: Callable[..., SlackRig], control: SimulatorControl
) -> None:
    rig = webhook_rig()
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_created_number=4)
    await control.patch_bulk(
        SLUG, IMPORT, 2, status="finished", members_created_number=2, members_errors=MEMBERS_ERRORS
    )
    await rig.pipeline.poll_due()
    results = await rig.deliver_all(watch.id)
    events = await rig.events(watch.id)
    assert results == [SendResult.delivered()] * len(events)
    posts = rig.slack.webhook_posts
    assert [p["text"].split(" · ")[0] for p in posts] == [
        "🆕 Bulk 1 discovered",
        "🆕 Bulk 2 discovered",
        "✅ Bulk 1 finished clean",
        "⚠️ Bulk 2 finished with errors",
        "🏁 Import completed",
    ]
    assert {c.method for c in rig.slack.calls} == {"webhook"}  # no Web API, no card
    assert rig.slack.problems() == []
    completed = message_text(posts[-1])
    assert "Bulk 1 · finished" in completed and "Bulk 2 · finished" in completed  # no card: listed here
    errors = message_text(posts[3])
    assert "language · value_not_match — 2 members: j***@example.com, a***@example.org" in errors
    assert "joe.bloggs" not in msgspec.json.encode(posts).decode()


async def test_show_pii_applies_to_webhook_messages_too(
    webhook_rig: Callable[..., SlackRig], control: SimulatorControl, redis: Redis
) -> None:
    rig = webhook_rig(BRIDGE_SLACK_SHOW_PII="true")
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="failed", members_errors=MEMBERS_ERRORS)
    await rig.pipeline.poll_due()
    await rig.deliver_all(watch.id)
    failed = next(p for p in rig.slack.webhook_posts if "failed" in p["text"])
    assert "joe.bloggs@example.com" in message_text(failed)
    assert await redis.keys(keys.ATTACHMENT_PREFIX + "*") == []


async def test_watches_without_a_slack_target_post_nothing(
    webhook_rig: Callable[..., SlackRig], control: SimulatorControl, redis: Redis
) -> None:
    rig = webhook_rig()
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    await rig.pipeline.create(watch_spec(channel=None))
    await rig.pipeline.poll_due()
    assert [e for e in await outbox(redis) if e.endswith(b"|slack")] == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 429, "retry_after": 3}, "retry"),
        ({"status": 500}, "retry"),
        ({"status": 404, "error": "no_service"}, "failed"),
        ({"status": 410, "error": "channel_is_archived"}, "failed"),
    ],
)
async def test_webhook_answers_are_retried_or_given_up_as_they_deserve(
    webhook_rig: Callable[..., SlackRig],
    control: SimulatorControl,
    fault: dict[str, object],
    expected: str,
) -> None:
    rig = webhook_rig()
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    (event,) = await rig.events(watch.id)
    rig.slack.inject(method="webhook", **fault)
    result = await rig.deliver(event)
    if expected == "retry":
        assert isinstance(result, RetryLater)
        if fault["status"] == 429:
            assert 3 <= result.defer_s < 4.1
    else:
        assert isinstance(result, SendResult) and result.outcome == "failed"
        assert HINTS[str(fault["error"])] in result.detail
    assert rig.slack.webhook_posts == []
