"""Bot-token mode against the Slack stand-in over HTTP and a real Redis: card, thread, retries."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import msgspec
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bridge.delivery.model import SendResult
from bridge.delivery.service import RetryLater
from bridge.slack.notifier import HINTS, MAX_ATTEMPTS
from bridge.slack.plain import message_text
from bridge.slack.render import CARD_BLOCK_ID_PREFIX, render_card
from bridge.slack.state import SlackState
from bridge.store import keys
from bridge.store.redis_store import ATTACHMENT_TTL_S
from bridge_tools.processes import free_port
from mpc_simulator import SimulatorControl
from tests.builders import MEMBERS_ERRORS
from tests.integration.conftest import SLUG, outbox
from tests.integration.slack.conftest import BOT_TOKEN, CHANNEL, IMPORT, SlackRig, run_deliveries, watch_spec


def line(lines: list[str], *needles: str) -> str | None:
    return next((x for x in lines if all(n in x for n in needles)), None)


async def test_the_first_event_posts_the_card_and_every_event_is_a_reply_in_its_thread(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 4101}, {"id": 4102}, {"id": 4103}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    results = await rig.deliver_all(watch.id)
    assert results == [SendResult.delivered()] * 3
    card = rig.card()
    lines = rig.card_lines()
    assert all(line(lines, f"Bulk {b}", "waiting") for b in (4101, 4102, 4103)), lines
    replies = rig.replies()
    assert [r.thread_ts for r in replies] == [card.ts] * 3
    assert not any(r.reply_broadcast for r in replies)
    assert rig.slack.problems() == []
    assert rig.slack.orphans() == []
    assert card.channel == CHANNEL


async def drive_to_completion(rig: SlackRig, control: SimulatorControl, watch_id: str) -> None:
    """4101 clean, 4102 retried then finished with errors, 4103 failed; delivering after each poll."""
    steps: list[tuple[int, dict[str, object]]] = [
        (4101, {"status": "working"}),
        (4101, {"status": "finished", "members_created_number": 10, "members_updated_number": 3}),
        (4102, {"status": "working"}),
        (4102, {"status": "waiting_for_retry", "retries": 1}),
        (4103, {"status": "working"}),
        (4102, {"status": "working"}),
        (4103, {"status": "failed", "retries": 5}),
        (
            4102,
            {
                "status": "finished",
                "members_created_number": 15,
                "members_updated_number": 2,
                "members_with_validation_errors_number": 3,
                "members_errors": MEMBERS_ERRORS,
            },
        ),
    ]
    for bulk_id, patch in steps:
        await control.patch_bulk(SLUG, IMPORT, bulk_id, **patch)
        await rig.pipeline.poll_due()
        await rig.deliver_all(watch_id)


async def test_the_card_is_updated_in_place_until_the_verdict_and_broadcasts_only_failed_and_completed(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 4101}, {"id": 4102}, {"id": 4103}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await rig.deliver_all(watch.id)
    await drive_to_completion(rig, control, watch.id)

    events = await rig.events(watch.id)
    assert events[-1].type == "import.completed"
    card = rig.card()
    # One update per poll with news: the first event of a poll renders the latest snapshot, the
    # others of the same poll find the card already showing it.
    assert card.update_count == 8
    lines = rig.card_lines()
    assert line(lines, "Bulk 4101", "finished", "10 created, 3 updated"), lines
    assert line(lines, "Bulk 4102", "finished", "retries 1/5"), lines
    assert line(lines, "Bulk 4103", "failed", "retries 5/5"), lines
    assert line(lines, "Completed", "1 clean, 1 with errors, 1 failed"), lines
    assert line(lines, "Totals", "25 created"), lines

    replies = rig.replies()
    assert len(replies) == len(events)
    assert [r.text.split(" — ")[0] for r in replies][-2:] == [
        "⚠️ Bulk 4102 finished with errors · 15 created, 2 updated, 3 invalid",
        "🏁 Import completed · 3 bulks: 1 clean, 1 with errors, 1 failed",
    ]
    broadcast = [r.text for r in replies if r.reply_broadcast]
    assert len(broadcast) == 2 and "Bulk 4103 failed" in broadcast[0] and "Import completed" in broadcast[1]
    assert rig.slack.problems() == []
    # Every card revision shown was newer than the one before (the header's block id carries it).
    revs = [card_rev(v["blocks"]) for v in [*card.history, {"blocks": card.blocks}]]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)


def card_rev(blocks: list[dict[str, object]]) -> int:
    block_id = str(blocks[0]["block_id"])
    return int(block_id.removeprefix(CARD_BLOCK_ID_PREFIX))


async def test_validation_errors_are_grouped_with_masked_members_by_default(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 4101}, {"id": 4102}, {"id": 4103}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await drive_to_completion(rig, control, watch.id)
    finished = next(r for r in rig.replies() if "4102 finished" in r.text)
    text = message_text(msgspec.to_builtins(finished))
    assert "• language · value_not_match — 2 members: j***@example.com, a***@example.org" in text
    assert "• birth_date · invalid_format — 1 member: a***@example.org" in text
    assert "• gender · value_not_match — 1 member: +47******12" in text
    everything = msgspec.json.encode([c.payload for c in rig.slack.calls]).decode()
    assert not [m for m in MEMBERS_ERRORS if m in everything]
    assert await rig.redis.keys(keys.ATTACHMENT_PREFIX + "*") == []


async def test_show_pii_posts_unmasked_members_from_a_side_record_never_from_the_event(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl
) -> None:
    rig = rig_factory(BRIDGE_SLACK_SHOW_PII="true")
    await control.put_import(SLUG, IMPORT, [{"id": 7}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await control.patch_bulk(
        SLUG, IMPORT, 7, status="finished", members_created_number=1, members_errors=MEMBERS_ERRORS
    )
    await rig.pipeline.poll_due()
    finished = next(e for e in await rig.events(watch.id) if e.type == "bulk.finished")
    stored = await rig.pipeline.store.get_event(finished.id)
    assert stored is not None and b"joe.bloggs@example.com" not in stored  # the event stays masked
    side = await rig.redis.get(keys.attachment(finished.id, "slack"))
    assert side is not None and b"joe.bloggs@example.com" in side
    assert 0 < await rig.redis.pttl(keys.attachment(finished.id, "slack")) <= ATTACHMENT_TTL_S * 1000

    await rig.deliver_all(watch.id)
    reply = next(r for r in rig.replies() if "finished" in r.text)
    text = message_text(msgspec.to_builtins(reply))
    assert "joe.bloggs@example.com" in text and "+4712345612" in text
    assert "joe.bloggs@example.com" not in reply.text  # the fallback (notifications) shows no member
    assert await rig.redis.get(keys.attachment(finished.id, "slack")) is None  # deleted once posted


async def test_without_show_pii_no_side_record_is_written(
    rig: SlackRig, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 7}])
    await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 7, status="failed", members_errors=MEMBERS_ERRORS)
    await rig.pipeline.poll_due()
    assert await redis.keys(keys.ATTACHMENT_PREFIX + "*") == []


async def test_a_429_defers_the_job_by_retry_after_without_sleeping_and_posts_once_later(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    (event,) = await rig.events(watch.id)
    rig.slack.inject(method="chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    result = await rig.deliver(event)
    assert time.monotonic() - started < 0.5  # deferred, not slept in the worker slot
    assert isinstance(result, RetryLater) and 1 <= result.defer_s < 2.1  # Retry-After + jitter < 1 s
    assert rig.slack.cards() == []
    await asyncio.sleep(result.defer_s)  # arq runs the job again then
    assert await rig.deliver(event, attempt=2) == SendResult.delivered()
    assert await rig.deliver(event, attempt=3) == SendResult.delivered()  # already delivered: skipped
    assert len(rig.replies()) == 1
    limited, card, _reply = rig.slack.calls_to("chat.postMessage")
    assert limited.http_status == 429 and card.at - limited.at >= 1.0


async def test_a_429_on_the_reply_holds_the_channel_for_every_message(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl
) -> None:
    rig = rig_factory(BRIDGE_SLACK_POST_INTERVAL_S="0.01")
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    first, second = await rig.events(watch.id)
    rig.slack.inject(method="chat.postMessage", status=429, retry_after=30, count=1)
    assert isinstance(await rig.deliver(first), RetryLater)  # the card post got the 429
    later = await rig.deliver(second)
    assert isinstance(later, RetryLater) and later.defer_s > 25  # the channel is held for everyone
    assert len(rig.slack.calls_to("chat.postMessage")) == 1


async def test_a_429_on_a_card_update_holds_the_channel_for_every_update_and_message(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl
) -> None:
    rig = rig_factory(BRIDGE_SLACK_POST_INTERVAL_S="0.01")
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await rig.deliver_all(watch.id)
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await control.patch_bulk(SLUG, IMPORT, 2, status="working")
    await rig.pipeline.poll_due()
    first, second = (await rig.events(watch.id))[-2:]
    rig.slack.inject(method="chat.update", status=429, retry_after=30, count=1)
    assert isinstance(await rig.deliver(first), RetryLater)  # the card update got the 429
    calls = len(rig.slack.calls)
    later = await rig.deliver(second)
    assert isinstance(later, RetryLater) and later.defer_s > 25  # held: no update, no reply
    assert len(rig.slack.calls) == calls


async def test_a_message_waiting_for_its_turn_when_slack_answers_429_waits_for_retry_after(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl
) -> None:
    rig = rig_factory(BRIDGE_SLACK_POST_INTERVAL_S="0.6")
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await rig.deliver_all(watch.id)
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await rig.pipeline.poll_due()
    event = (await rig.events(watch.id))[-1]
    state = SlackState(rig.redis, ttl_s=3600)
    await rig.redis.delete(keys.slack_pace(CHANNEL))
    await state.reserve(CHANNEL, "another message", 0.6)  # the channel's next turn is 0.6 s away
    assert 0.3 < await state.reserve(CHANNEL, f"reply:{event.id}", 0.6) <= 0.6

    async def limited_meanwhile() -> None:
        await asyncio.sleep(0.2)
        await state.hold(CHANNEL, 30)  # another worker's message got a 429

    replies = len(rig.replies())
    _, result = await asyncio.gather(limited_meanwhile(), rig.deliver(event))
    assert isinstance(result, RetryLater) and result.defer_s > 25
    assert len(rig.replies()) == replies


async def test_server_errors_and_dropped_connections_are_retried_with_backoff(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    (event,) = await rig.events(watch.id)
    rig.slack.inject(method="chat.postMessage", status=503)
    first = await rig.deliver(event, attempt=1)
    rig.slack.inject(method="chat.postMessage", status=500)
    third = await rig.deliver(event, attempt=3)
    assert isinstance(first, RetryLater) and isinstance(third, RetryLater)
    assert 1.5 <= first.defer_s <= 2.5 and 6 <= third.defer_s <= 10  # 2 s, 8 s, ±20 %
    rig.slack.inject(method="chat.postMessage", error="internal_error")
    assert isinstance(await rig.deliver(event, attempt=4), RetryLater)  # Slack's own transient error
    assert await rig.deliver(event, attempt=5) == SendResult.delivered()
    assert len(rig.replies()) == 1


async def test_an_unreachable_slack_and_a_timeout_are_retried_with_backoff(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl
) -> None:
    nowhere = rig_factory(BRIDGE_SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/")
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await nowhere.pipeline.create(watch_spec())
    await nowhere.pipeline.poll_due()
    (event,) = await nowhere.events(watch.id)
    with capture_logs() as logs:
        refused = await nowhere.deliver(event, attempt=2)
    assert isinstance(refused, RetryLater) and 3 <= refused.defer_s <= 5  # 4 s ±20 %
    assert [e["error"] for e in logs if e["event"] == "slack unavailable: message deferred"] == [
        "ClientConnectorError"
    ]

    rig = rig_factory()
    impatient = rig.worker(timeout_s=0.2)
    rig.slack.inject(method="chat.postMessage", delay_s=1.0)
    slow = await rig.deliver(event, deliveries=impatient)
    assert isinstance(slow, RetryLater) and 1.5 <= slow.defer_s <= 2.5
    assert await rig.deliver(event, attempt=2, deliveries=impatient) == SendResult.delivered()
    assert len(rig.replies()) == 1


async def test_a_transient_failure_is_given_up_after_max_attempts(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    (event,) = await rig.events(watch.id)
    rig.slack.inject(status=500)
    result = await rig.deliver(event, attempt=MAX_ATTEMPTS)
    assert isinstance(result, SendResult) and result.outcome == "failed"
    assert await outbox(rig.redis) == []  # not retried forever


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth"])
async def test_a_refusal_that_will_not_change_fails_at_once_with_a_clear_log_line(
    rig: SlackRig, control: SimulatorControl, error: str
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    (event,) = await rig.events(watch.id)
    if error == "invalid_auth":
        rig.slack.token = "xoxb-another-token"
    else:
        rig.slack.set_channel_error(CHANNEL, error)
    with capture_logs() as logs:
        result = await rig.deliver(event)
    assert isinstance(result, SendResult) and result.outcome == "failed" and error in result.detail
    refused = [entry for entry in logs if entry["event"] == "slack refused the message"]
    assert len(refused) == 1 and refused[0]["error"] == error and refused[0]["hint"] == HINTS[error]
    assert refused[0]["log_level"] == "error" and refused[0]["channel"] == CHANNEL
    assert await outbox(rig.redis) == []
    assert BOT_TOKEN not in repr(logs)


async def test_each_event_is_posted_once_when_its_job_runs_again(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    (event,) = await rig.events(watch.id)
    assert await rig.deliver(event) == SendResult.delivered()
    # A worker killed after Slack answered and the reply was recorded, before the job was marked
    # done: arq runs the job again.
    await rig.redis.delete(keys.delivered(event.id, "slack"))
    assert await rig.deliver(event) == SendResult.delivered()
    assert len(rig.replies()) == 1
    assert len(rig.slack.calls_to("chat.postMessage")) == 2  # the card and one reply


async def test_a_card_deleted_in_slack_is_posted_again_and_the_thread_continues_there(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await rig.deliver_all(watch.id)
    old = rig.card()
    old.deleted = True
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await rig.pipeline.poll_due()
    results = await rig.deliver_all(watch.id)
    assert isinstance(results[0], RetryLater)  # chat.update: message_not_found
    new = rig.card()
    assert new.ts != old.ts and len(rig.replies()) == 1
    assert line(rig.card_lines(), "Bulk 1", "working")


async def latest_rev(rig: SlackRig, watch_id: str) -> int:
    record = await rig.pipeline.store.get_watch(watch_id)
    assert record is not None
    return render_card(record.spec, record.snapshot, record.state).rev


async def test_two_workers_racing_on_one_card_never_leave_an_older_render(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await rig.deliver_all(watch.id)
    other = rig.worker()
    seen = len(await rig.events(watch.id))

    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await rig.pipeline.poll_due()
    (first,) = (await rig.events(watch.id))[seen:]
    rig.slack.inject(method="chat.update", delay_s=0.4)  # worker 1's update is slow to land
    slow = asyncio.create_task(rig.deliver(first))
    await asyncio.sleep(0.15)
    await control.patch_bulk(SLUG, IMPORT, 2, status="working")
    await rig.pipeline.poll_due()
    (second,) = (await rig.events(watch.id))[seen + 1 :]
    assert await rig.deliver(second, deliveries=other) == SendResult.delivered()
    assert await slow == SendResult.delivered()

    card = rig.card()
    revs = [card_rev(v["blocks"]) for v in [*card.history, {"blocks": card.blocks}]]
    assert revs == sorted(revs), revs
    assert revs[-1] == await latest_rev(rig, watch.id)
    assert line(rig.card_lines(), "Bulk 1", "working") and line(rig.card_lines(), "Bulk 2", "working")
    assert len(rig.replies()) == 4


async def test_many_events_delivered_by_two_workers_at_once_end_on_the_latest_card(
    rig: SlackRig, control: SimulatorControl
) -> None:
    bulks = list(range(1, 9))
    await control.put_import(SLUG, IMPORT, [{"id": b} for b in bulks])
    watch = await rig.pipeline.create(watch_spec())
    workers = [rig.deliveries, rig.worker()]
    for round_, status in enumerate(("", "working", "finished")):
        for b in bulks if status else ():
            await control.patch_bulk(SLUG, IMPORT, b, status=status, members_created_number=round_)
        await rig.pipeline.poll_due()
        rig.slack.inject(method="chat.update", delay_s=0.05, count=3)
        for attempt in range(1, 6):
            pending = [
                e
                for e in await rig.events(watch.id)
                if not await rig.pipeline.store.was_delivered(e.id, "slack")
            ]
            if not pending:
                break
            await asyncio.gather(*(rig.deliver(e, attempt, workers[i % 2]) for i, e in enumerate(pending)))
    events = await rig.events(watch.id)
    assert events[-1].type == "import.completed"
    card = rig.card()
    revs = [card_rev(v["blocks"]) for v in [*card.history, {"blocks": card.blocks}]]
    assert revs == sorted(revs), revs
    assert revs[-1] == await latest_rev(rig, watch.id)
    assert len(rig.replies()) == len(events)
    assert len({r.text for r in rig.replies()}) == len(events)  # each event once
    assert rig.slack.problems() == [] and rig.slack.orphans() == []


async def test_a_job_asked_for_renders_without_end_hands_the_card_over_and_comes_back(
    rig: SlackRig, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    (event,) = await rig.events(watch.id)
    state = SlackState(rig.redis, ttl_s=3600)
    await rig.deliver(event)  # the card exists
    await rig.redis.delete(keys.delivered(event.id, "slack"))
    flooding = True

    async def flood() -> None:  # other workers asking for refreshes, faster than it can finish
        while flooding:
            await state.want_refresh(watch.id, CHANNEL)
            await asyncio.sleep(0)

    task = asyncio.create_task(flood())
    try:
        result = await rig.deliver(event, attempt=2)
    finally:
        flooding = False
        await task
    assert isinstance(result, RetryLater) and str(result) == "card busy: handed over"
    assert await rig.redis.get(keys.slack_card_lock(watch.id, CHANNEL)) is None  # handed over
    assert await rig.deliver(event, attempt=3) == SendResult.delivered()
    assert len(rig.replies()) == 1


async def test_messages_to_one_channel_are_paced_and_later_ones_deferred_not_slept(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl
) -> None:
    rig = rig_factory(BRIDGE_SLACK_POST_INTERVAL_S="0.5")
    await control.put_import(SLUG, IMPORT, [{"id": b} for b in range(1, 5)])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    events = await rig.events(watch.id)
    results = await asyncio.gather(*(rig.deliver(e) for e in events))
    deferred = [(e, r) for e, r in zip(events, results, strict=True) if isinstance(r, RetryLater)]
    assert deferred and all(r.defer_s > 1.0 for _, r in deferred)
    for event, later in sorted(deferred, key=lambda item: item[1].defer_s):
        await asyncio.sleep(max(0.0, later.defer_s - 0.05))
        assert await rig.deliver(event, attempt=2) == SendResult.delivered()
    posts = [c.at for c in rig.slack.calls_to("chat.postMessage")]
    assert len(posts) == 5  # the card and four replies
    assert min(b - a for a, b in itertools.pairwise(posts)) >= 0.45


async def test_through_the_delivery_loop_a_429_postpones_the_delivery_and_frees_the_slot(
    rig: SlackRig, control: SimulatorControl
) -> None:
    other = "C0SLACKOTHER"
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    one = await rig.pipeline.create(watch_spec())
    two = await rig.pipeline.create(watch_spec(wid="wch_000000000000000000other", channel=other))
    await rig.pipeline.poll_due()
    await rig.deliver_all(one.id)
    await rig.deliver_all(two.id)
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await rig.pipeline.poll_due()  # one event per watch: one delivery each, one channel each
    rig.slack.inject(method="chat.update", status=429, retry_after=2)
    # One slot: a delivery sleeping out the 429 would hold up the other.
    await run_deliveries(rig, max_jobs=1)
    limited = next(c for c in rig.slack.calls if c.http_status == 429)
    held = limited.payload["channel"]
    after = [c for c in rig.slack.calls if c.seq > limited.seq]
    elsewhere = [c for c in after if c.payload.get("channel") != held]
    assert elsewhere and elsewhere[0].at - limited.at < 1.0  # the slot went to the other job at once
    retried = [c for c in after if c.payload.get("channel") == held]
    assert retried and min(c.at for c in retried) - limited.at >= 2.0  # only after Retry-After
    assert len(rig.replies(CHANNEL)) == 2 and len(rig.replies(other)) == 2 and rig.slack.problems() == []


DEAD_HOLDER_LOCK_LEFT_MS = 1000
"""What is left of the card lock of a worker killed mid-render (below the wait ``CARD_WAIT_S``)."""


async def test_a_refresh_asked_while_the_card_holder_was_killed_is_rendered_once_its_lock_lapses(
    rig: SlackRig, control: SimulatorControl
) -> None:
    """Before, a job finding the card locked trusted the holder to render its change: a holder
    killed mid-render (SIGKILL) left the card on an older snapshot for good."""
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await rig.pipeline.create(watch_spec())
    await rig.pipeline.poll_due()
    await rig.deliver_all(watch.id)
    seen = len(await rig.events(watch.id))
    await rig.redis.set(keys.slack_card_lock(watch.id, CHANNEL), "killed-worker", px=DEAD_HOLDER_LOCK_LEFT_MS)
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await rig.pipeline.poll_due()
    (started,) = (await rig.events(watch.id))[seen:]
    assert await rig.deliver(started) == SendResult.delivered()
    assert line(rig.card_lines(), "Bulk 1", "working"), rig.card_lines()
