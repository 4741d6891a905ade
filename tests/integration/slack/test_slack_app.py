"""The Slack app end to end: the API's ``POST /slack/events`` (Litestar's test client) against a
real Redis, the MPC simulator and the Slack stand-in over HTTP, which signs commands and clicks
the way Slack does; the follow-ups run in a real arq worker (burst mode)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Final

import pytest
from arq.worker import Worker
from litestar.testing import TestClient
from redis.asyncio import Redis

from bridge.app import create_app
from bridge.core.codec import deserialize_job, serialize_job
from bridge.delivery.model import SLACK
from bridge.slack.commands import ACTION_MUTE, ACTION_REFRESH, ACTION_STOP, ACTION_UNMUTE
from bridge.store import keys
from bridge.store.redis_store import resolved
from bridge.wiring import worker_options
from bridge_tools.slack_standin import Message, click_body, command_body, signed
from mpc_simulator import SimulatorControl
from tests.integration.conftest import API_KEY, SLUG
from tests.integration.slack.conftest import CHANNEL, IMPORT, SlackRig, run_deliveries, watch_spec

SIGNING_SECRET: Final = "8f742231b10e8888abcd99yyyzzz85a5"
AUTH: Final = {"Authorization": f"Bearer {API_KEY}"}
OTHER_CHANNEL: Final = "C0NOTALLOWED"
PERSON: Final = "U0PERSON"


@contextmanager
def api(rig: SlackRig) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(rig.pipeline.settings)) as client:
        yield client


@pytest.fixture
async def app_rig(rig_factory: Callable[..., SlackRig]) -> SlackRig:
    return rig_factory(BRIDGE_SLACK_SIGNING_SECRET=SIGNING_SECRET)


def post(client: TestClient[Any], body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/slack/events", content=body, headers=signed(SIGNING_SECRET, body) if headers is None else headers
    )


def command(client: TestClient[Any], text: str, **fields: Any) -> str:
    response = post(client, command_body(text, **fields))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response_type"] == "ephemeral"
    text_out: str = body["text"]
    return text_out


def click(client: TestClient[Any], action: str, watch_id: str, rig: SlackRig, **fields: Any) -> None:
    fields.setdefault("response_url", rig.slack.response_url())
    response = post(client, click_body(action, watch_id, **fields))
    assert response.status_code == 200, response.text


def allow(client: TestClient[Any], *channels: str, club: str = SLUG) -> None:
    body = {"channel_ids": list(channels)}
    response = client.put(f"/v1/clubs/{club}/slack-channels", json=body, headers=AUTH)
    assert response.status_code == 200, response.text


def watch_id_in(text: str) -> str:
    start = text.index("wch_")
    return text[start : start + 28]


async def run_worker(rig: SlackRig) -> None:
    """Every queued Slack follow-up (arq) and every delivery (the outbox), as a worker runs them."""
    worker = Worker(
        functions=worker_options(rig.pipeline.settings)["functions"],  # the worker's own
        redis_pool=rig.pipeline.queue,
        queue_name=keys.QUEUE,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        ctx={
            "runtime": SimpleNamespace(
                deliveries=rig.deliveries, notifiers=rig.notifiers, settings=rig.pipeline.settings
            )
        },
        burst=True,
        poll_delay=0.02,
        handle_signals=False,
        keep_result=0,
    )
    # Not worker.close(): it would close the connection pool the rig shares.
    await asyncio.wait_for(worker.main(), timeout=20)
    await run_deliveries(rig)


def actions_of(card: Message) -> list[str]:
    return [e["action_id"] for b in card.blocks if b["type"] == "actions" for e in b["elements"]]


async def queued(redis: Redis) -> int:
    return int(await resolved(redis.zcard(keys.QUEUE)))


# ---------------------------------------------------------------------------- signatures


async def test_unsigned_wrongly_signed_and_stale_requests_get_401_and_change_nothing(
    app_rig: SlackRig, redis: Redis
) -> None:
    body = command_body(f"{SLUG} {IMPORT}")
    now = int(time.time())
    refused = {
        "unsigned": {"Content-Type": "application/x-www-form-urlencoded"},
        "another secret": signed("not-the-secret", body),
        "stale (5 min 10 s)": signed(SIGNING_SECRET, body, now - 310),
        "from the future": signed(SIGNING_SECRET, body, now + 310),
        "no timestamp": {"X-Slack-Signature": signed(SIGNING_SECRET, body)["X-Slack-Signature"]},
        "huge timestamp": {**signed(SIGNING_SECRET, body), "X-Slack-Request-Timestamp": "9" * 5000},
        "signature of other bytes": signed(SIGNING_SECRET, body + b"&text=x"),
        "not hex": {**signed(SIGNING_SECRET, body), "X-Slack-Signature": "v0=" + "zz" * 32},
    }
    not_utf8 = b"\xff\xfe" + body  # no Slack request: it cannot be checked, so it is refused
    with api(app_rig) as client:
        allow(client, CHANNEL)
        for what, headers in refused.items():
            response = post(client, body, headers)
            assert response.status_code == 401, what
            assert response.json()["error"]["code"] == "unauthorized", what
        assert post(client, not_utf8, signed(SIGNING_SECRET, not_utf8)).status_code == 401
        assert len(await redis.keys(keys.WATCH_PREFIX + "*")) == 0 and await queued(redis) == 0
        # Signed four minutes ago: still fine.
        response = post(client, body, signed(SIGNING_SECRET, body, now - 240))
        assert response.status_code == 200 and "Watching" in response.json()["text"]
    assert len(await redis.keys(keys.WATCH_PREFIX + "*")) == 1


async def test_without_a_signing_secret_every_request_is_refused(
    rig_factory: Callable[..., SlackRig], redis: Redis
) -> None:
    rig = rig_factory()
    body = command_body("help")
    with api(rig) as client:
        response = client.post("/slack/events", content=body, headers=signed(SIGNING_SECRET, body))
    assert response.status_code == 401


# ---------------------------------------------------------------------------- the command


async def test_a_command_creates_a_watch_whose_card_with_buttons_reaches_the_standin(
    app_rig: SlackRig, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 4101}, {"id": 4102}])
    with api(app_rig) as client:
        allow(client, CHANNEL)
        answer = command(client, f"{SLUG} {IMPORT}")
        some = command(client, f"{SLUG} other-import 4101 4102")
        again = command(client, f"{SLUG} other-import 4102 4101")
    wid = watch_id_in(answer)
    assert "Watching the whole import" in answer and f"`{wid}`" in answer
    assert "Watching bulks 4101, 4102" in some
    assert again.startswith("Already watching") and watch_id_in(some) in again
    named = await app_rig.pipeline.store.get_watch(watch_id_in(some))
    assert named is not None and named.spec.slack is not None
    assert named.spec.slack.channel == CHANNEL and named.spec.bulk_ids == (4101, 4102)
    assert named.spec.created_by == f"slack:{PERSON}"
    await app_rig.pipeline.poll_due()
    await run_worker(app_rig)
    card = app_rig.card()
    assert actions_of(card) == [ACTION_STOP, ACTION_REFRESH, ACTION_MUTE]
    stop = next(e for b in card.blocks if b["type"] == "actions" for e in b["elements"])
    assert stop["confirm"]["confirm"]["text"] == "Stop" and stop["value"] == wid
    assert app_rig.slack.problems() == []


async def test_command_errors_say_what_to_fix_and_change_nothing(app_rig: SlackRig, redis: Redis) -> None:
    with api(app_rig) as client:
        allow(client, CHANNEL)
        answers = {
            "unknown club": command(client, f"no-such-club {IMPORT}"),
            "malformed import": command(client, f"{SLUG} imp/../x"),
            "malformed club": command(client, f"Infinity_Mall {IMPORT}"),
            "huge bulk": command(client, f"{SLUG} {IMPORT} {'9' * 400}"),
            "zero bulk": command(client, f"{SLUG} {IMPORT} 0"),
            "channel not allowed": command(client, f"{SLUG} {IMPORT}", channel=OTHER_CHANNEL),
            "other command": command(client, f"{SLUG} {IMPORT}", command="/other"),
            "stop unknown": command(client, "stop wch_" + "0" * 24),
        }
    assert "I do not know the club `no-such-club`" in answers["unknown club"]
    assert "bridge clubs slack-channels no-such-club C0SLACKTEST" in answers["unknown club"]
    assert "is not an MPC import id" in answers["malformed import"]
    assert "is not a club slug" in answers["malformed club"]
    assert "is not a bulk id" in answers["huge bulk"] and "…" in answers["huge bulk"]
    assert "is not a bulk id" in answers["zero bulk"]
    assert f"This channel is not allowed to watch `{SLUG}`" in answers["channel not allowed"]
    assert f"bridge clubs slack-channels {SLUG} {OTHER_CHANNEL}" in answers["channel not allowed"]
    assert "answers `/mpc-watch`" in answers["other command"]
    assert "No watch" in answers["stop unknown"]
    assert len(await redis.keys(keys.WATCH_PREFIX + "*")) == 0 and await queued(redis) == 0


async def test_a_club_without_mpc_credentials_is_refused(
    rig_factory: Callable[..., SlackRig], redis: Redis
) -> None:
    rig = rig_factory(BRIDGE_SLACK_SIGNING_SECRET=SIGNING_SECRET, BRIDGE_MPC_TOKEN="")
    with api(rig) as client:
        allow(client, CHANNEL)
        answer = command(client, f"{SLUG} {IMPORT}")
        assert f"No MPC credentials for `{SLUG}`" in answer
        stored = client.put(f"/v1/clubs/{SLUG}/credentials", json={"token": "t"}, headers=AUTH)
        assert stored.status_code == 204
        assert "Watching" in command(client, f"{SLUG} {IMPORT}")


async def test_only_the_allowed_users_may_use_the_command(
    rig_factory: Callable[..., SlackRig], redis: Redis
) -> None:
    rig = rig_factory(BRIDGE_SLACK_SIGNING_SECRET=SIGNING_SECRET, BRIDGE_SLACK_ALLOWED_USERS="U0BOSS")
    with api(rig) as client:
        allow(client, CHANNEL)
        assert "not among the people allowed" in command(client, f"{SLUG} {IMPORT}")
        assert "Watching" in command(client, f"{SLUG} {IMPORT}", user="U0BOSS")


async def test_help_list_and_stop(app_rig: SlackRig, control: SimulatorControl, redis: Redis) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 4101}])
    with api(app_rig) as client:
        allow(client, CHANNEL, OTHER_CHANNEL)
        assert "/mpc-watch list" in command(client, "help") and "/mpc-watch list" in command(client, "")
        assert "No active watch" in command(client, "list")
        wid = watch_id_in(command(client, f"{SLUG} {IMPORT}"))
        elsewhere = watch_id_in(command(client, f"{SLUG} other-import", channel=OTHER_CHANNEL))
        listed = command(client, "list")
        assert wid in listed and elsewhere not in listed and IMPORT in listed
        assert "No watch" in command(client, f"stop {elsewhere}")  # not this channel's
        await app_rig.pipeline.poll_due()
        await run_worker(app_rig)
        stopped = command(client, f"stop {wid}")
        assert stopped.startswith("⏹️ Stopped watch") and wid in stopped
        assert "already ended" in command(client, f"stop {wid}")
        assert "No active watch" in command(client, "list")
    record = await app_rig.pipeline.store.get_watch(wid)
    assert record is not None and record.state == "stopped"
    await run_worker(app_rig)
    assert actions_of(app_rig.card()) == []  # the stopped card has no buttons
    assert [r.text for r in app_rig.replies()][-1] == f"⏹️ Stopped by <@{PERSON}>"


# ---------------------------------------------------------------------------- the buttons


async def started(rig: SlackRig, client: TestClient[Any], control: SimulatorControl) -> str:
    await control.put_import(SLUG, IMPORT, [{"id": 4101}])
    allow(client, CHANNEL)
    wid = watch_id_in(command(client, f"{SLUG} {IMPORT}"))
    await rig.pipeline.poll_due()
    await run_worker(rig)
    return wid


async def test_each_button_changes_the_watch_and_the_card(
    app_rig: SlackRig, control: SimulatorControl, redis: Redis
) -> None:
    with api(app_rig) as client:
        wid = await started(app_rig, client, control)
        assert actions_of(app_rig.card()) == [ACTION_STOP, ACTION_REFRESH, ACTION_MUTE]

        click(client, ACTION_MUTE, wid, app_rig)
        assert await redis.exists(keys.slack_mute(wid))
        await run_worker(app_rig)
        assert actions_of(app_rig.card()) == [ACTION_STOP, ACTION_REFRESH, ACTION_UNMUTE]
        assert app_rig.replies()[-1].text == f"🔕 Progress replies muted by <@{PERSON}>"

        click(client, ACTION_UNMUTE, wid, app_rig)
        await run_worker(app_rig)
        assert not await redis.exists(keys.slack_mute(wid))
        assert actions_of(app_rig.card()) == [ACTION_STOP, ACTION_REFRESH, ACTION_MUTE]

        tid = f"{SLUG}/{IMPORT}"
        due_before = await redis.zscore(keys.SCHEDULE, tid)
        click(client, ACTION_REFRESH, wid, app_rig)
        due_after = await redis.zscore(keys.SCHEDULE, tid)
        assert due_before is not None and due_after is not None and due_after <= due_before
        await run_worker(app_rig)
        assert app_rig.replies()[-1].text == f"🔄 Refresh asked by <@{PERSON}>"

        click(client, ACTION_STOP, wid, app_rig)
        record = await app_rig.pipeline.store.get_watch(wid)
        assert record is not None and record.state == "stopped"
        await run_worker(app_rig)
    card = app_rig.card()
    assert actions_of(card) == [] and card.update_count >= 3
    assert app_rig.replies()[-1].text == f"⏹️ Stopped by <@{PERSON}>"
    assert app_rig.slack.problems() == []


async def test_a_click_from_a_channel_or_user_not_allowed_is_refused_with_an_ephemeral_message(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl, redis: Redis
) -> None:
    rig = rig_factory(BRIDGE_SLACK_SIGNING_SECRET=SIGNING_SECRET, BRIDGE_SLACK_ALLOWED_USERS=PERSON)
    with api(rig) as client:
        wid = await started(rig, client, control)
        allow(client, OTHER_CHANNEL)  # the club's list now names only the other channel
        click(client, ACTION_STOP, wid, rig, response_url=rig.slack.response_url("channel"))
        allow(client, CHANNEL)
        click(client, ACTION_STOP, wid, rig, user="U0STRANGER", response_url=rig.slack.response_url("user"))
        await run_worker(rig)
    record = await rig.pipeline.store.get_watch(wid)
    assert record is not None and record.state == "active"
    answers = {r["ref"]: r for r in rig.slack.responses}
    assert answers["channel"]["response_type"] == "ephemeral"
    assert answers["channel"]["replace_original"] is False
    assert "This channel is not allowed to watch" in answers["channel"]["text"]
    assert "not among the people allowed" in answers["user"]["text"]
    assert actions_of(rig.card()) == [ACTION_STOP, ACTION_REFRESH, ACTION_MUTE]
    assert not any("Stopped by" in r.text for r in rig.replies())


async def test_a_response_url_that_is_not_slacks_is_never_called(
    app_rig: SlackRig, control: SimulatorControl, redis: Redis
) -> None:
    with api(app_rig) as client:
        wid = await started(app_rig, client, control)
        click(client, ACTION_REFRESH, wid, app_rig, user="U0X", channel=OTHER_CHANNEL,
              response_url="http://169.254.169.254/latest/meta-data")  # fmt: skip
        await run_worker(app_rig)
    assert app_rig.slack.responses == []


async def test_mute_skips_progress_replies_but_the_card_still_moves(
    app_rig: SlackRig, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 4101, "status": "working"}])
    spec = await app_rig.pipeline.create(watch_spec(wid="wch_" + "ab" * 12, notify_progress=True))
    with api(app_rig) as client:
        allow(client, CHANNEL)
        await app_rig.pipeline.poll_due()
        await run_worker(app_rig)
        await control.patch_bulk(SLUG, IMPORT, 4101, members_created_number=5)
        await app_rig.pipeline.poll_due()
        await run_worker(app_rig)
        progress_replies = [r for r in app_rig.replies() if "5 created" in r.text]
        assert progress_replies, [r.text for r in app_rig.replies()]  # not muted yet: replied
        click(client, ACTION_MUTE, spec.id, app_rig)
        await run_worker(app_rig)
        replies_before = len(app_rig.replies())
        await control.patch_bulk(SLUG, IMPORT, 4101, members_created_number=9)
        await app_rig.pipeline.poll_due()
        await run_worker(app_rig)
    types = await app_rig.pipeline.types(spec.id)
    assert types.count("bulk.progress") == 2
    assert len(app_rig.replies()) == replies_before  # the second progress: no reply
    assert any("9 created" in line for line in app_rig.card_lines())  # the card shows it
    last = (await app_rig.pipeline.events(spec.id))[-1]
    assert last.type == "bulk.progress" and await app_rig.pipeline.store.was_delivered(last.id, SLACK)


# ---------------------------------------------------------------------------- hostile bodies


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"payload=" + b"%5B" * 5000 + b"%5D" * 5000, id="deeply nested payload"),
        pytest.param(b"payload=not-json", id="payload not json"),
        pytest.param(b"payload=" + json.dumps({"type": "view_submission"}).encode(), id="not a click"),
        pytest.param(command_body("help") + b"&text=again", id="a field twice"),
        pytest.param(b"command=%2Fmpc-watch&text=help", id="no channel"),
        pytest.param(
            b"text=%FF%FE&command=%2Fmpc-watch&channel_id=C1&user_id=U1", id="percent-encoded non utf-8"
        ),
        pytest.param(b"&".join(b"f%d=1" % i for i in range(100)), id="too many fields"),
    ],
)
async def test_signed_but_malformed_bodies_are_a_400_and_change_nothing(
    app_rig: SlackRig, redis: Redis, body: bytes
) -> None:
    with api(app_rig) as client:
        response = post(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert await queued(redis) == 0 and len(await redis.keys(keys.WATCH_PREFIX + "*")) == 0


async def test_slack_channels_route_and_its_validation(app_rig: SlackRig, redis: Redis) -> None:
    with api(app_rig) as client:
        assert client.get(f"/v1/clubs/{SLUG}/slack-channels", headers=AUTH).json() == {"channel_ids": []}
        allow(client, "C0B", "C0A", "C0A")
        assert client.get(f"/v1/clubs/{SLUG}/slack-channels", headers=AUTH).json() == {
            "channel_ids": ["C0A", "C0B"]
        }
        for bad in ({"channel_ids": ["#general"]}, {"channel_ids": "C0A"}, {"channel_ids": ["C0A"], "x": 1}):
            response = client.put(f"/v1/clubs/{SLUG}/slack-channels", json=bad, headers=AUTH)
            assert response.status_code in (400, 422), bad
        unauthorized = client.put(f"/v1/clubs/{SLUG}/slack-channels", json={"channel_ids": []})
        assert unauthorized.status_code == 401
        made = client.post(
            "/v1/api-keys", json={"name": "crm", "clubs": [SLUG], "role": "editor"}, headers=AUTH
        )
        assert made.status_code == 201, made.text
        club_key = {"Authorization": f"Bearer {made.json()['key']}"}
        for method in ("GET", "PUT"):
            refused = client.request(
                method, f"/v1/clubs/{SLUG}/slack-channels", json={"channel_ids": ["C0X"]}, headers=club_key
            )
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", method
        allow(client)
        assert client.get(f"/v1/clubs/{SLUG}/slack-channels", headers=AUTH).json() == {"channel_ids": []}
