"""What happens after Slack got its answer: the ``slack_followup`` job.

Slack wants an answer to a command or a click within 3 seconds, and the bridge answers at once
with what it changed in Redis. Anything that talks to Slack again — updating the card, writing
"Stopped by @user" in its thread, an ephemeral message through the request's ``response_url`` —
is a job for a worker, with retries like any delivery.

The job's argument carries ids, the user's Slack id and the ``response_url`` (Slack's one-off
address for answering that request, valid 30 minutes); never a token. A ``response_url`` is
posted to only when it is Slack's (``https://hooks.slack.com/``) or on the Slack API host the
bridge is configured with (a local stand-in in tests and the demo): a forged one cannot make the
worker call anywhere else.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import msgspec

from bridge.delivery.model import SendResult
from bridge.logs import get_logger
from bridge.slack.commands import ActionName, done_line, ephemeral
from bridge.slack.notifier import SLACK_TIMEOUT_S, SlackBotNotifier

SLACK_FOLLOWUP_FUNCTION: Final = "slack_followup"
"""Name of the arq function that finishes a Slack command or click."""
FOLLOWUP_JOB_PREFIX: Final = "slk:"
FOLLOWUP_MAX_TRIES: Final = 8
SLACK_RESPONSE_HOST: Final = "hooks.slack.com"

log = get_logger("bridge.slack")


class FollowUp(msgspec.Struct, kw_only=True, frozen=True):
    """The argument of a ``slack_followup`` job."""

    ref: str
    """Unique per request: the job's id and the thread line's dedup record."""
    channel: str
    user: str
    action: ActionName | None = None
    """An action done on ``watch_id``: its card is refreshed and the thread records who did it."""
    watch_id: str | None = None
    response_url: str = ""
    reply: str | None = None
    """Shown only to ``user`` through ``response_url``."""


def job_id(ref: str) -> str:
    return FOLLOWUP_JOB_PREFIX + ref


def response_url_allowed(url: str, slack_api_url: str) -> bool:
    """Slack's own response address, or one on the configured Slack API host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname == SLACK_RESPONSE_HOST and parts.port in (None, 443):
        return True
    api = urlsplit(slack_api_url)
    return bool(parts.hostname) and (parts.scheme, parts.hostname, parts.port) == (
        api.scheme,
        api.hostname,
        api.port,
    )


async def run_followup(
    job: FollowUp,
    *,
    notifier: Any,
    session: aiohttp.ClientSession,
    slack_api_url: str,
) -> SendResult:
    """Do the job: the card and its thread (bot mode), then the ephemeral reply."""
    if job.action is not None and job.watch_id is not None and isinstance(notifier, SlackBotNotifier):
        result = await notifier.note(job.watch_id, job.channel, job.ref, done_line(job.action, job.user))
        if result.outcome == "retry":
            return result
    if job.reply and job.response_url:
        if not response_url_allowed(job.response_url, slack_api_url):
            log.warning("slack response_url refused: not Slack's", ref=job.ref)
            return SendResult(outcome="failed", detail="response_url is not Slack's")
        try:
            async with session.post(
                job.response_url,
                json=ephemeral(job.reply),
                timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                if response.status >= 500 or response.status == 429:
                    return SendResult(outcome="retry", retry_after_s=1.0, detail=f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(outcome="retry", retry_after_s=1.0, detail=type(exc).__name__)
    return SendResult.delivered()
