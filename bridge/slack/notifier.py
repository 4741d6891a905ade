"""Slack notifiers: the import card with a thread (bot token) or one message per event (webhook).

Bot mode, for one event (a ``deliver`` job; safe to run again):

1. **Card**: ask for a refresh of the watch's card; the worker holding the card's lock (this one,
   or another one already at it, then waited for) renders the *latest* snapshot and posts the
   card the first time, ``chat.update`` afterwards (see :mod:`.state` for why an older render
   never wins and no refresh is lost).
2. **Reply**: post the event under the card (``thread_ts``; ``bulk.failed`` and
   ``import.completed`` also to the channel), unless this event's reply is already recorded.
   Between Slack's answer and that record is the only moment a crash can cause a duplicate.

Failures become a :class:`~bridge.delivery.model.SendResult`, never a sleep in a worker slot:
429 → ``retry`` after ``Retry-After``; 5xx, timeouts, connection errors and Slack's transient
errors → ``retry`` with exponential backoff, up to :data:`MAX_ATTEMPTS`; ``ok: false`` errors such
as ``channel_not_found`` or ``not_in_channel`` → ``failed`` at once with a log line saying what
to fix. Only short waits happen in the job: pacing under :data:`PACE_INLINE_MAX_S`, and waiting
for another worker to finish creating the card (:data:`CARD_WAIT_S`).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bridge.core.member_errors import ErrorSummary
from bridge.core.model import Event
from bridge.core.retry import exponential, jittered, parse_retry_after
from bridge.delivery.model import SLACK, Delivery, SendResult
from bridge.logs import get_logger
from bridge.slack.attachments import read_unmasked
from bridge.slack.render import CardControls, SlackMessage, broadcast, bulk_lines, render_card, render_event
from bridge.slack.state import Card, SlackState
from bridge.store.redis_store import RedisStore

SLACK_TIMEOUT_S: Final = 10.0
"""One Slack call (connect, send, answer); a slower one is a transient failure, retried later."""
CARD_LOCK_TTL_S: Final = 30.0
"""Longer than any Slack call may take (the session's timeout, ``SLACK_TIMEOUT_S``) and renewed
before each call, so the lock cannot lapse while its holder's update is on the way."""
CARD_WAIT_S: Final = 3.0
"""How long a job waits for another worker to render the card (its change included) before it is
deferred."""
CARD_WAIT_POLL_S: Final = 0.05
CARD_BUSY_RETRY_S: Final = 1.0
"""Deferral when the card is still being created after :data:`CARD_WAIT_S`."""
MAX_RENDERS_PER_JOB: Final = 20
"""Card renders one job does for others while it holds the card; then it hands the card over and
is deferred, well inside the job timeout (a steady flood of events must not keep it forever)."""
CARD_HANDOVER_RETRY_S: Final = 0.2
CARD_GONE_RETRY_S: Final = 0.2
"""Deferral after Slack lost the card (deleted): the next run posts a new one."""
PACE_INLINE_MAX_S: Final = 1.0
"""A message due within this long waits in the job; a later one is deferred (re-enqueued)."""
RETRY_AFTER_DEFAULT_S: Final = 5.0
"""A 429 without a usable ``Retry-After``."""
RETRY_AFTER_MAX_S: Final = 900.0
"""A longer ``Retry-After`` is capped (a bogus header must not park a message for days)."""
BACKOFF_BASE_S: Final = 2.0
BACKOFF_MAX_S: Final = 300.0
BACKOFF_JITTER: Final = 0.2
"""±20 %, so messages that failed together do not come back together."""
MAX_ATTEMPTS: Final = 12
"""Runs of a job (deferrals for pacing or a 429 included) after which a message that still fails
transiently is given up: about 25 minutes of backoff."""

TRANSIENT_ERRORS: Final = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited", "rate_limited"}
)
"""``ok: false`` errors worth retrying; every other error code will not change by itself."""
CARD_GONE_ERRORS: Final = frozenset({"message_not_found", "thread_not_found"})
HINTS: Final = {
    "channel_not_found": "check the watch's channel id, and invite the bot if the channel is private",
    "not_in_channel": "invite the bot to the channel (/invite @your-bot)",
    "is_archived": "the channel is archived: unarchive it or watch with another channel",
    "channel_is_archived": "the channel is archived: unarchive it or watch with another channel",
    "invalid_auth": "BRIDGE_SLACK_BOT_TOKEN is not a valid token",
    "not_authed": "BRIDGE_SLACK_BOT_TOKEN is missing",
    "token_revoked": "the bot token was revoked: install the app again",
    "account_inactive": "the bot's account is deactivated",
    "missing_scope": "the bot token needs the chat:write scope",
    "restricted_action": "the workspace does not let the bot post there",
    "invalid_blocks": "the bridge built an invalid message: please report it",
    "invalid_payload": "the bridge built an invalid message: please report it",
    "no_service": "the incoming webhook was removed: set BRIDGE_SLACK_WEBHOOK_URL to a new one",
    "action_prohibited": "the workspace does not allow this incoming webhook to post",
}

ProblemKind = Literal["rate_limited", "transient", "permanent", "card_gone"]


class SlackProblem(Exception):
    """A Slack call that did not work, sorted by what to do about it."""

    def __init__(self, kind: ProblemKind, error: str, detail: str = "", retry_after_s: float | None = None):
        super().__init__(f"{error}: {detail}" if detail else error)
        self.kind = kind
        self.error = error
        self.detail = detail
        self.retry_after_s = retry_after_s


class _Later(Exception):
    """Not now: defer the job by ``delay_s`` (pacing, or another worker busy with the card)."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


def retry_after(headers: Mapping[str, Any] | None, now: float | None = None) -> float:
    """Seconds from a ``Retry-After`` header (Slack sends whole seconds), bounded; the default
    when there is none or it is unreadable."""
    raw = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    seconds = parse_retry_after(
        raw if isinstance(raw, str | bytes) else None,
        now=time.time() if now is None else now,
        highest_s=RETRY_AFTER_MAX_S,
    )
    return RETRY_AFTER_DEFAULT_S if seconds is None else seconds


def problem_from_status(status: int, error: str, headers: Mapping[str, Any] | None) -> SlackProblem:
    if status == 429:
        return SlackProblem("rate_limited", "ratelimited", retry_after_s=retry_after(headers))
    if status >= 500 or status == 408:
        return SlackProblem("transient", error or f"http_{status}", f"HTTP {status}")
    if error in TRANSIENT_ERRORS:
        return SlackProblem("transient", error)
    if error in CARD_GONE_ERRORS:
        return SlackProblem("card_gone", error)
    return SlackProblem("permanent", error or f"http_{status}", HINTS.get(error, f"HTTP {status}"))


def problem_from_api_error(exc: SlackApiError) -> SlackProblem:
    response = exc.response
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error") or "")
    return problem_from_status(int(response.status_code), error, response.headers)


def backoff_s(attempt: int, jitter: float = 0.5) -> float:
    """Exponential backoff for ``attempt`` (1-based), capped, spread by ±:data:`BACKOFF_JITTER`
    (``jitter`` is a random number in [0, 1))."""
    return jittered(exponential(attempt, base_s=BACKOFF_BASE_S, cap_s=BACKOFF_MAX_S), jitter, BACKOFF_JITTER)


class _Base:
    def __init__(
        self,
        *,
        store: RedisStore,
        state: SlackState,
        show_pii: bool,
        post_interval_s: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        logger: Any = None,
    ) -> None:
        self._store = store
        self._state = state
        self._show_pii = show_pii
        self._interval_s = post_interval_s
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._log = logger or get_logger("bridge.slack")
        self._stopping = False

    def begin_stop(self) -> None:
        """The worker is draining: from now on a job that would wait (for its turn in the channel,
        or for another worker's card) hands its message back to the queue at once instead, so
        the drain is spent on sends, not on waits that the next worker can do as well."""
        self._stopping = True

    async def _errors(self, event: Event) -> ErrorSummary | None:
        """The unmasked summary stored beside the event (see :mod:`.attachments`), while showing
        member identifiers is allowed; otherwise ``None``: the event's own (masked) one is shown."""
        if not self._show_pii:
            return None
        return read_unmasked(await self._store.attachment(event.id, SLACK))

    async def _pace(self, channel: str, ref: str) -> None:
        wait = await self._state.reserve(channel, ref, self._interval_s)
        if wait > PACE_INLINE_MAX_S:
            raise _Later(wait, "pacing: about one message a second per channel")
        if wait > 0:
            if self._stopping:
                raise _Later(wait, "the worker is stopping: the message waits for its turn in the queue")
            await self._sleep(wait)
            held = await self._state.held(channel)
            if held > 0:  # Slack answered 429 while this message waited for its turn
                raise _Later(held, "slack asked to wait (429)")

    def _outcome(self, problem: SlackProblem, delivery: Delivery, channel: str) -> SendResult:
        log = self._log.bind(
            event_id=delivery.event.id,
            watch_id=delivery.event.data.watch_id,
            type=delivery.event.type,
            channel=channel,
            attempt=delivery.attempt,
        )
        if problem.kind == "rate_limited":
            delay = (problem.retry_after_s or RETRY_AFTER_DEFAULT_S) + self._jitter()
            log.info("slack rate limit: message deferred", retry_after_s=problem.retry_after_s)
            return SendResult(outcome="retry", retry_after_s=delay, detail="slack answered 429")
        if problem.kind == "permanent":
            log.error("slack refused the message", error=problem.error, hint=problem.detail)
            return SendResult(outcome="failed", detail=f"slack: {problem.error} ({problem.detail})")
        if delivery.attempt >= MAX_ATTEMPTS:
            log.error("slack kept failing: message given up", error=problem.error, detail=problem.detail)
            return SendResult(
                outcome="failed", detail=f"slack: {problem.error} after {delivery.attempt} attempts"
            )
        if problem.kind == "card_gone":
            log.warning("the import card is gone from slack: posting a new one", error=problem.error)
            return SendResult(outcome="retry", retry_after_s=CARD_GONE_RETRY_S, detail=problem.error)
        delay = backoff_s(delivery.attempt, self._jitter())
        log.warning(
            "slack unavailable: message deferred",
            error=problem.error,
            detail=problem.detail,
            retry_in_s=delay,
        )
        return SendResult(outcome="retry", retry_after_s=delay, detail=f"slack: {problem.error}")


class SlackBotNotifier(_Base):
    """Bot-token mode: one import card per (watch, channel), every event a reply in its thread."""

    def __init__(self, *, client: AsyncWebClient, interactive: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = client
        self._interactive = interactive
        """Cards carry buttons: the Slack app receives their clicks (``/slack/events`` or Socket Mode)."""

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The HTTP session the client posts through (the worker's shared one)."""
        return self._client.session

    async def check(self) -> None:
        """Log who the bot is (``auth.test``), or why Slack refuses the token; never raises."""
        try:
            response = await self._client.auth_test()
        except SlackApiError as exc:
            problem = problem_from_api_error(exc)
            self._log.error("slack refused the bot token", error=problem.error, hint=problem.detail)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log.warning("slack not reachable at startup", error=repr(exc))
        else:
            self._log.info("slack ready", team=response.get("team"), bot_user=response.get("user"))

    async def send(self, delivery: Delivery) -> SendResult:
        event = delivery.event
        record = await self._store.get_watch(event.data.watch_id)
        if record is None or record.spec.slack is None:
            reason = "watch no longer stored" if record is None else "the watch has no Slack channel"
            self._log.warning("slack message dropped", event_id=event.id, reason=reason)
            return SendResult(outcome="failed", detail=reason)
        channel = record.spec.slack.channel
        try:
            card = await self._sync_card(record.spec.id, channel, delivery.event.id)
            await self._reply(delivery, card, channel)
        except _Later as later:
            return SendResult(outcome="retry", retry_after_s=later.delay_s, detail=later.reason)
        except SlackProblem as problem:
            return self._outcome(problem, delivery, channel)
        return SendResult.delivered()

    # ------------------------------------------------------------------ the card

    async def _sync_card(self, wid: str, channel: str, cause: str) -> Card:
        """The card, refreshed to the latest snapshot by this worker or by the one holding it."""
        mine = await self._state.want_refresh(wid, channel)
        token = secrets.token_hex(8)
        deadline = self._clock() + CARD_WAIT_S
        while not await self._state.lock(wid, channel, token, CARD_LOCK_TTL_S):
            card = await self._state.card(wid, channel)
            if card is not None and card.done >= mine:
                return card  # its holder rendered the latest snapshot, our change included
            if self._clock() >= deadline or self._stopping:
                # Still busy, or its holder died mid-render (the lock lapses by its TTL), or this
                # worker is draining: back later.
                raise _Later(CARD_BUSY_RETRY_S, "another worker is updating the card")
            await self._sleep(CARD_WAIT_POLL_S)
        try:
            for _ in range(MAX_RENDERS_PER_JOB):
                seen = await self._state.wanted(wid, channel)
                card = await self._publish(wid, channel, token, cause)
                if await self._state.unlock_if_done(wid, channel, token, seen, CARD_LOCK_TTL_S):
                    return card
                if self._stopping:
                    break  # draining: the renders still asked for go to the next holder
            # Still asked for more: this job comes back, takes the card again and renders the latest.
            raise _Later(CARD_HANDOVER_RETRY_S, "card busy: handed over")
        except BaseException:
            # Cancelled or failed: hand the card over now (the lock would lapse after its TTL).
            await asyncio.shield(self._state.unlock(wid, channel, token))
            raise

    async def _publish(self, wid: str, channel: str, token: str, cause: str) -> Card:
        """Post the card, or update it if the latest render differs from what Slack shows
        (``cause``: the event or action that asked, for the log)."""
        record = await self._store.get_watch(wid)
        if record is None:
            raise SlackProblem("permanent", "watch_gone", "the watch is no longer stored")
        controls = CardControls(muted=await self._state.muted(wid)) if self._interactive else None
        render = render_card(record.spec, record.snapshot, record.state, controls)
        card = await self._state.card(wid, channel)
        if card is None:
            ref = f"card:{wid}:{channel}"
            await self._pace(channel, ref)
            try:
                response = await self._call(
                    self._client.chat_postMessage, channel=channel, **_payload(render.message)
                )
            except SlackProblem as problem:
                await self._after_refusal(problem, channel, ref)
                raise
            await self._state.release(ref)
            card = Card(
                channel=str(response.get("channel") or channel),
                ts=str(response["ts"]),
                rev=render.rev,
                digest=render.digest,
            )
            await self._state.save_card(wid, channel, card)
            self._log.info("slack card posted", watch_id=wid, channel=card.channel, ts=card.ts, rev=card.rev)
            return card
        if render.digest == card.digest or render.rev < card.rev:
            return card  # unchanged, or Slack already shows a newer snapshot
        if not await self._state.extend(wid, channel, token, CARD_LOCK_TTL_S):
            raise _Later(CARD_BUSY_RETRY_S, "lost the card lock")
        held = await self._state.held(channel)
        if held > 0:
            # Slack answered 429 for this channel: the update waits (in the queue, not in a slot).
            raise _Later(held, "slack asked to wait (429)")
        try:
            await self._call(
                self._client.chat_update, channel=card.channel, ts=card.ts, **_payload(render.message)
            )
        except SlackProblem as problem:
            if problem.kind == "rate_limited":
                await self._state.hold(channel, problem.retry_after_s or RETRY_AFTER_DEFAULT_S)
            if problem.kind == "card_gone":
                await self._state.forget_card(wid, channel, card.ts)
                raise
            if problem.kind == "permanent":
                # A card Slack will not update must not keep every reply from being posted.
                self._log.error(
                    "slack refused to update the card",
                    cause=cause,
                    channel=channel,
                    error=problem.error,
                    hint=problem.detail,
                )
                return card
            raise
        card = Card(channel=card.channel, ts=card.ts, rev=render.rev, digest=render.digest)
        await self._state.save_card(wid, channel, card)
        return card

    # ------------------------------------------------------------------ the reply

    async def _reply(self, delivery: Delivery, card: Card, channel: str) -> None:
        event = delivery.event
        if await self._state.reply(event.id) is not None:
            return  # posted by an earlier run of this job
        if event.type == "bulk.progress" and await self._state.muted(event.data.watch_id):
            return  # "Mute progress" on the card: the card still shows the counts
        unmasked = await self._errors(event)
        message = render_event(event, errors=unmasked)
        ref = f"reply:{event.id}"
        await self._pace(channel, ref)
        try:
            response = await self._call(
                self._client.chat_postMessage,
                channel=card.channel,
                thread_ts=card.ts,
                reply_broadcast=broadcast(event),
                **_payload(message),
            )
        except SlackProblem as problem:
            await self._after_refusal(problem, channel, ref)
            if problem.kind == "card_gone":
                await self._state.forget_card(event.data.watch_id, channel, card.ts)
            raise
        await self._state.save_reply(event.id, str(response["ts"]))
        await self._state.release(ref)
        if unmasked is not None:
            await self._store.drop_attachment(event.id, SLACK)

    # ------------------------------------------------------------------ actions from Slack

    async def note(self, wid: str, channel: str, ref: str, text: str) -> SendResult:
        """After someone acted on a watch from Slack: bring its card up to date (buttons and
        state) if it was posted, and record ``text`` ("Stopped by @user") in its thread, once per
        ``ref``. Without a card yet, the first event posts it, already up to date."""
        try:
            if await self._state.card(wid, channel) is None:
                return SendResult(outcome="failed", detail="no card yet")
            card = await self._sync_card(wid, channel, ref)
            if await self._state.reply(ref) is not None:
                return SendResult.delivered()
            slot = f"note:{ref}"
            await self._pace(channel, slot)
            try:
                response = await self._call(
                    self._client.chat_postMessage, channel=card.channel, thread_ts=card.ts, text=text
                )
            except SlackProblem as problem:
                await self._after_refusal(problem, channel, slot)
                raise
            await self._state.save_reply(ref, str(response["ts"]))
            await self._state.release(slot)
        except _Later as later:
            return SendResult(outcome="retry", retry_after_s=later.delay_s, detail=later.reason)
        except SlackProblem as problem:
            if problem.kind == "rate_limited":
                return SendResult(
                    outcome="retry", retry_after_s=problem.retry_after_s, detail="slack answered 429"
                )
            if problem.kind == "transient":
                return SendResult(
                    outcome="retry", retry_after_s=backoff_s(1, self._jitter()), detail=problem.error
                )
            return SendResult(outcome="failed", detail=f"slack: {problem.error} ({problem.detail})")
        return SendResult.delivered()

    async def _after_refusal(self, problem: SlackProblem, channel: str, ref: str) -> None:
        """A post that did not happen gives its slot back; a 429 holds the whole channel."""
        if problem.kind == "rate_limited":
            await self._state.hold(channel, problem.retry_after_s or RETRY_AFTER_DEFAULT_S)
        await self._state.release(ref)

    async def _call(self, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        try:
            return await method(**kwargs)
        except SlackApiError as exc:
            raise problem_from_api_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SlackProblem("transient", type(exc).__name__, str(exc)[:200]) from None


class SlackWebhookNotifier(_Base):
    """Incoming-webhook mode: one message per event (a webhook cannot update or thread)."""

    PACE_CHANNEL: Final = "incoming-webhook"
    """The webhook posts to the one channel it was created for: one pace for all its messages."""

    def __init__(self, *, client: AsyncWebhookClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = client

    async def send(self, delivery: Delivery) -> SendResult:
        event = delivery.event
        unmasked = await self._errors(event)
        lines: list[str] = []
        if event.type == "import.completed":
            record = await self._store.get_watch(event.data.watch_id)
            if record is not None:
                lines = bulk_lines(record.spec, record.snapshot)
        message = render_event(event, errors=unmasked, bulks=lines)
        ref = f"webhook:{event.id}"
        try:
            await self._pace(self.PACE_CHANNEL, ref)
            await self._post(message)
        except _Later as later:
            return SendResult(outcome="retry", retry_after_s=later.delay_s, detail=later.reason)
        except SlackProblem as problem:
            if problem.kind == "rate_limited":
                await self._state.hold(self.PACE_CHANNEL, problem.retry_after_s or RETRY_AFTER_DEFAULT_S)
            await self._state.release(ref)
            return self._outcome(problem, delivery, self.PACE_CHANNEL)
        await self._state.release(ref)
        if unmasked is not None:
            await self._store.drop_attachment(event.id, SLACK)
        return SendResult.delivered()

    async def _post(self, message: SlackMessage) -> None:
        try:
            response = await self._client.send(text=message.text, blocks=message.blocks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SlackProblem("transient", type(exc).__name__, str(exc)[:200]) from None
        if response.status_code != 200:
            body = (response.body or "").strip()[:100]
            raise problem_from_status(response.status_code, body, response.headers)


def _payload(message: SlackMessage) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks}
