"""The Slack stand-in itself: as a process, and answering as Slack does over HTTP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge_tools.processes import Process
from bridge_tools.slack_standin import READY_PREFIX, TOKEN_PREFIX, RunningStandin
from tests.integration.slack.conftest import BOT_TOKEN

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}


@pytest.fixture
async def http(standin: RunningStandin) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=standin.url) as client:
        yield client


async def api(http: httpx.AsyncClient, method: str, token: str = BOT_TOKEN, **payload: Any) -> dict[str, Any]:
    response = await http.post(f"/api/{method}", json=payload, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_as_a_process_it_prints_ready_and_its_token_and_serves_slack_sdk(tmp_path: Path) -> None:
    proc = Process(
        [sys.executable, "-m", "bridge_tools.slack_standin", "--port", "0"], tmp_path / "standin.log"
    ).start(stdout_pipe=True)
    assert proc.popen is not None and proc.popen.stdout is not None
    stdout = proc.popen.stdout
    try:
        ready = (await asyncio.wait_for(asyncio.to_thread(stdout.readline), 20)).decode().strip()
        token_line = (await asyncio.wait_for(asyncio.to_thread(stdout.readline), 5)).decode().strip()
        assert ready.startswith(READY_PREFIX + " http://127.0.0.1:")
        assert token_line.startswith(TOKEN_PREFIX + " xoxb-")
        url, token = ready.split()[-1], token_line.split()[-1]
        client = AsyncWebClient(token=token, base_url=url + "/api/")
        assert (await client.auth_test())["ok"]
        posted = await client.chat_postMessage(channel="#general", text="hi", blocks=[SECTION])
        async with httpx.AsyncClient(base_url=url) as http:
            view = (await http.get("/_control/messages")).json()
        assert [m["ts"] for m in view["messages"]] == [posted["ts"]]
        assert view["messages"][0]["channel"] == posted["channel"] != "#general"  # Slack answers ids
    finally:
        code = proc.stop()
        stdout.close()
    assert code == 0


async def test_a_wrong_or_missing_token_is_refused_as_slack_does(http: httpx.AsyncClient) -> None:
    assert (await api(http, "auth.test", token="xoxb-wrong"))["error"] == "invalid_auth"
    response = await http.post("/api/auth.test")
    assert response.json() == {"ok": False, "error": "not_authed"}


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ([{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], "151 characters"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "3001 characters"),
        ([SECTION] * 51, "51 blocks"),
        ([{**SECTION, "colour": "red"}], "not read back unchanged"),
        ([{"type": "sparkles"}], "unknown block type"),
        ([{"type": "context", "elements": []}], "1 to 10 elements"),
    ],
)
async def test_blocks_slack_would_refuse_are_refused_and_recorded(
    http: httpx.AsyncClient, standin: RunningStandin, blocks: list[dict[str, Any]], problem: str
) -> None:
    answer = await api(http, "chat.postMessage", channel="C0TEST0001", text="fallback", blocks=blocks)
    assert answer["ok"] is False and answer["error"] == "invalid_blocks"
    assert any(problem in p for p in standin.slack.problems()), standin.slack.problems()
    assert standin.slack.cards() == []


async def test_blocks_without_fallback_text_are_accepted_but_recorded(
    http: httpx.AsyncClient, standin: RunningStandin
) -> None:
    answer = await api(http, "chat.postMessage", channel="C0TEST0001", blocks=[SECTION])
    assert answer["ok"] is True
    assert standin.slack.problems() == ["#1 chat.postMessage: blocks without a fallback text"]


async def test_replies_thread_under_their_parent_and_updates_keep_history(
    http: httpx.AsyncClient, standin: RunningStandin
) -> None:
    top = await api(http, "chat.postMessage", channel="C0TEST0001", text="card v1")
    reply = await api(
        http, "chat.postMessage", channel="C0TEST0001", text="r", thread_ts=top["ts"], reply_broadcast=True
    )
    assert reply["ok"]
    assert (await api(http, "chat.update", channel="C0TEST0001", ts=top["ts"], text="card v2"))["ok"]
    (card,) = standin.slack.cards()
    assert (card.text, card.update_count, card.history[0]["text"]) == ("card v2", 1, "card v1")
    (only,) = standin.slack.replies(card)
    assert only.reply_broadcast and only.thread_ts == top["ts"]
    lost = await api(http, "chat.postMessage", channel="C0TEST0001", text="r", thread_ts="1.000009")
    assert lost["error"] == "thread_not_found"
    gone = await api(http, "chat.update", channel="C0TEST0001", ts="1.000009", text="x")
    assert gone["error"] == "message_not_found"


async def test_faults_are_injected_through_the_control_api(http: httpx.AsyncClient) -> None:
    created = await http.post(
        "/_control/faults", json={"method": "chat.postMessage", "status": 429, "retry_after": 3}
    )
    assert created.status_code == 201
    limited = await http.post("/api/chat.postMessage", json={"channel": "C0TEST0001", "text": "x"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    await http.post("/_control/channels", json={"channel": "C0TEST0001", "error": "not_in_channel"})
    assert (await api(http, "chat.postMessage", channel="C0TEST0001", text="x"))["error"] == "not_in_channel"
    client = AsyncWebClient(token=BOT_TOKEN, base_url=str(http.base_url) + "/api/", retry_handlers=[])
    await http.post("/_control/faults", json={"status": 500})
    with pytest.raises(SlackApiError) as failed:
        await client.auth_test()
    assert failed.value.response.status_code == 500
    calls = (await http.get("/_control/calls")).json()
    assert [c["http_status"] for c in calls] == [429, 200, 500]
    assert BOT_TOKEN not in str(calls)
    await http.post("/_control/reset")
    assert (await http.get("/_control/calls")).json() == []


async def test_the_incoming_webhook_accepts_good_messages_and_refuses_bad_ones(
    http: httpx.AsyncClient, standin: RunningStandin
) -> None:
    ok = await http.post("/services/T0/B0/x", json={"text": "hi", "blocks": [SECTION]})
    assert (ok.status_code, ok.text) == (200, "ok")
    empty = await http.post("/services/T0/B0/x", json={})
    assert (empty.status_code, empty.text) == (400, "no_text")
    invalid = await http.post("/services/T0/B0/x", json={"text": "x", "blocks": [{"type": "sparkles"}]})
    assert (invalid.status_code, invalid.text) == (400, "invalid_blocks")
    legacy = await http.post("/services/T0/B0/x", data={"payload": '{"text": "form style"}'})
    assert legacy.status_code == 200
    assert [p["text"] for p in standin.slack.webhook_posts] == ["hi", "form style"]
