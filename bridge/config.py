"""Configuration: one typed settings object read from ``BRIDGE_*`` environment variables.

Every variable is a field of :class:`Settings`; its environment name is ``BRIDGE_`` + the field
name in upper case, its default and constraints live on the field, and its description is the
text of the configuration reference. :func:`load_settings` validates everything once, at start;
a wrong value raises :class:`ConfigError` whose one-line message names the variable and never
repeats a secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from bridge.redis_url import RedisUrlError, parse_redis_url

ENV_PREFIX: Final = "BRIDGE_"

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_MPC_BASE_URL: Final = "https://api.mpc.placewise.com"
"""Production MPC; the documentation's examples use ``https://api.mpc.dev.placewise.com``."""
DEFAULT_SLACK_API_URL: Final = "https://slack.com/api/"
MPC_POLL_FLOOR_S: Final = 5.0
"""MPC asks for polling "in intervals not smaller than 5 seconds": the default minimum interval."""
POLL_INTERVAL_LOWEST_S: Final = 0.05
"""The smallest interval accepted at all (tests, the demo and benchmarks run against the simulator)."""
WORKER_EXIT_MARGIN_S: Final = 10.0
"""After its drain, a worker has this long to cancel, hand back and disconnect; then it exits anyway.
So a worker is gone ``BRIDGE_WORKER_DRAIN_S`` + this after SIGTERM: set Kubernetes'
``terminationGracePeriodSeconds`` above that sum."""
WORKER_HEALTH_INTERVAL_S: Final = 30
"""How often a worker writes its health record in Redis (``bridge worker --check``, the image's
``HEALTHCHECK`` and ``arq --check`` read it); the record expires one second later, so a check fails
once a worker has been stuck that long."""
MPC_RETRY_AFTER_MAX_S: Final = 600.0
"""The longest ``Retry-After`` from MPC honoured as given: a longer one pauses the club this long."""
MPC_CLUB_RATE: Final = 5.0
"""Requests per second one club's budget refills by, shared by every worker. MPC does not publish
its own per-customer bucket (the 429s it sends name one of 600); the bridge keeps to a small part
of it so the club's other integrations keep theirs."""
MPC_CLUB_BURST: Final = 10
"""Requests one club may send at once after a quiet while."""
MPC_REQUESTS_PER_POLL: Final = 4
"""Requests one poll has in flight at most (a watch on 1,000 bulks never fires 1,000 at once)."""
WATCH_MAX_BULK_IDS: Final = 100
"""Bulks one watch may name; a whole-import watch (no ``bulk_ids``) follows any number."""
WATCH_BULK_IDS_CEILING: Final = 1000
"""The most ``BRIDGE_WATCH_MAX_BULK_IDS`` may allow (and what the API schema states)."""
MAX_WATCHES_PER_CLUB: Final = 1000
"""Active watches one club may have at once (an ended watch no longer counts)."""
MAX_SUBSCRIPTIONS_PER_CLUB: Final = 100
"""Webhook subscriptions filtered to one club; those without a club filter count as one more group."""
WEBHOOK_TEST_INTERVAL_S: Final = 10.0
"""Least time between two ``webhook.test`` events sent to one subscription."""
SLACK_POST_INTERVAL_S: Final = 1.0
"""Slack asks for "no more than one message per channel per second" (bursts tolerated)."""
SLACK_COMMAND: Final = "/mpc-watch"
"""The slash command people type in Slack (it must match the command in the Slack app's settings)."""
SLACK_COMMAND_PATTERN: Final = r"^/[a-z0-9_-]{1,31}$"
"""Slack's own rule for command names: a slash, then up to 31 lower-case letters, digits, - or _."""
SLACK_APP_TOKEN_PREFIX: Final = "xapp-"  # noqa: S105 - a prefix, not a token
SLACK_USER_ID_PATTERN: Final = r"^[UW][A-Z0-9]{2,30}$"

WEBHOOK_RETRY_SCHEDULE_S: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""The waits after a webhook's first attempt (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)."""
WEBHOOK_RETRY_MAX_STEPS: Final = 20
"""Retries a schedule may list."""
WEBHOOK_SCHEDULE_MAX_TOTAL_S: Final = 6 * 86_400.0
"""Longest a whole retry schedule may take at worst (every wait jittered up, then doubled by
``Retry-After``)."""
WEBHOOK_TIMEOUT_S: Final = 15.0
"""A webhook attempt succeeds with a 2xx answer within 15 s."""
WEBHOOK_TIMEOUT_MAX_S: Final = 50.0
"""Below the default delivery timeout, so a slow receiver never gets the delivery cut short."""
DELIVERY_TIMEOUT_S: Final = 60.0
"""How long one delivery may run. A claimed delivery is leased for this long plus its in-flight
grace and 10 s: one whose worker was killed runs again only then."""
WEBHOOK_DISABLE_AFTER_S: Final = 5 * 86_400.0
"""A subscription failing continuously this long (5 days) with no success is disabled."""
WEBHOOK_ALLOW_PORTS: Final = (443, 8443)
"""The ports webhook URLs may name (HTTPS and its usual alternative): an SSRF through the bridge
cannot reach a database or an admin port on a public host."""
WEBHOOK_DNS_TIMEOUT_S: Final = 5.0
"""Longest a webhook host name's lookup may take, at creation and at every send."""
WEBHOOK_DNS_TIMEOUT_MAX_S: Final = 30.0
DNS_PORT: Final = 53


CONSOLE_SESSION_S: Final = 8 * 3600.0
"""A working day: a console left open overnight asks for the key again."""
CONSOLE_SESSION_MAX_S: Final = 7 * 86_400.0
API_KEY_MIN_CHARS: Final = 32
"""An API key shorter than this is refused at start: a bearer key is the whole of the API's
protection, so it must not be guessable (``openssl rand -hex 24`` gives 48 characters)."""

FERNET_KEY_HINT: Final = (
    "url-safe base64 of 32 bytes (a Fernet key); generate one with: "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


SlackMode = Literal["bot", "webhook"]


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message is one line naming the variable."""


class Secret:
    """A configuration value that must never be printed: its repr and str are masked."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


def _doc(text: str, **constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(description=text, **constraints)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the API, the workers and the CLI read from the environment."""

    redis_url: Annotated[
        str,
        _doc(
            "Redis the API and workers share: `redis://[:password@]host:6379/0`, `rediss://` (TLS), "
            "`unix:///path.sock`, or Sentinel: "
            "`redis+sentinel://[:password@]host:26379,host2:26379/mymaster/0` "
            "(`rediss+sentinel://` for TLS; `?sentinel_password=` when the Sentinels need their own). "
            "Redis Cluster is not supported."
        ),
    ] = DEFAULT_REDIS_URL
    api_keys: Annotated[
        tuple[Secret, ...], _doc("Bearer keys accepted on `/v1` routes, comma-separated. The API needs one.")
    ] = ()
    secret_key: Annotated[
        tuple[Secret, ...],
        _doc(
            "Fernet key (url-safe base64 of 32 bytes) encrypting MPC tokens and webhook secrets at rest. "
            "Several keys, comma-separated, newest first, while rotating: the first seals, every one "
            "opens; `bridge secrets reseal` then seals everything with the first."
        ),
    ] = ()
    mpc_base_url: Annotated[str, _doc("Base URL of the MPC API, without the `/v3` part.")] = (
        DEFAULT_MPC_BASE_URL
    )
    mpc_token: Annotated[
        Secret | None, _doc("Default MPC API token for clubs without their own credentials.")
    ] = None
    mpc_product_name: Annotated[
        str, _doc("Value of the `X-Product-Name` header sent to MPC.", min_length=1)
    ] = "mpc-import-bridge"
    poll_min_interval_s: Annotated[
        float,
        _doc(
            "Floor between two polls of one bulk or import (MPC asks for >= 5 s).", ge=POLL_INTERVAL_LOWEST_S
        ),
    ] = MPC_POLL_FLOOR_S
    poll_max_interval_s: Annotated[
        float, _doc("Ceiling of the interval while a bulk keeps `waiting` or MPC keeps failing.", ge=0.05)
    ] = 60.0
    poll_concurrency: Annotated[
        int,
        _doc(
            "Most imports one worker process polls at the same time. The worker runs fewer while "
            "its event loop lags because of its own work, so that deliveries stay prompt.",
            ge=1,
            le=10_000,
        ),
    ] = 200
    poll_lease_s: Annotated[
        float,
        _doc(
            "How long an import stays with the worker that claimed it; then it is due again "
            "(that worker died).",
            ge=0.1,
            le=3600,
        ),
    ] = 60.0
    upstream_timeout_s: Annotated[
        float, _doc("Timeout of one MPC request (read, write, pool).", gt=0, le=300)
    ] = 10.0
    upstream_connect_timeout_s: Annotated[float, _doc("Connect timeout of one MPC request.", gt=0, le=60)] = (
        3.0
    )
    upstream_failing_after: Annotated[
        int, _doc("Consecutive failed polls before `watch.upstream_failing` is announced.", ge=1, le=1000)
    ] = 5
    retry_after_max_s: Annotated[
        float, _doc("Longest `Retry-After` from MPC that is honoured as given; longer ones are capped.", ge=1)
    ] = MPC_RETRY_AFTER_MAX_S
    mpc_club_rate: Annotated[
        float,
        _doc(
            "Requests per second to MPC one club's budget allows, shared by every worker (a token "
            "bucket in Redis). A poll finding it empty sends nothing and waits for the next token.",
            gt=0,
            le=100_000,
        ),
    ] = MPC_CLUB_RATE
    mpc_club_burst: Annotated[
        int, _doc("Requests to MPC one club may send at once after a quiet while.", ge=1, le=100_000)
    ] = MPC_CLUB_BURST
    mpc_requests_per_poll: Annotated[
        int, _doc("Requests one poll has in flight to MPC at most.", ge=1, le=1000)
    ] = MPC_REQUESTS_PER_POLL
    watch_max_bulk_ids: Annotated[
        int,
        _doc(
            "Bulks one watch may name in `bulk_ids` (a whole-import watch follows any number).",
            ge=1,
            le=WATCH_BULK_IDS_CEILING,
        ),
    ] = WATCH_MAX_BULK_IDS
    max_watches_per_club: Annotated[
        int,
        _doc(
            "Active watches one club may have at once; one more is refused (409 `limit_reached`) "
            "until one ends.",
            ge=1,
            le=10_000_000,
        ),
    ] = MAX_WATCHES_PER_CLUB
    max_subscriptions_per_club: Annotated[
        int,
        _doc(
            "Webhook subscriptions filtered to one club (those without a club filter count as one "
            "more group); one more is refused (409 `limit_reached`).",
            ge=1,
            le=100_000,
        ),
    ] = MAX_SUBSCRIPTIONS_PER_CLUB
    webhook_test_interval_s: Annotated[
        float,
        _doc(
            "Least time between two `webhook.test` events to one subscription (sooner: 429 with "
            "`Retry-After`).",
            ge=0.1,
            le=3600,
        ),
    ] = WEBHOOK_TEST_INTERVAL_S
    slack_bot_token: Annotated[
        Secret | None, _doc("Slack bot token (`xoxb-...`): import cards and threads.")
    ] = None
    slack_webhook_url: Annotated[
        Secret | None, _doc("Slack incoming-webhook URL: one message per event.")
    ] = None
    slack_api_url: Annotated[
        str, _doc("Slack Web API base URL (a local stand-in in tests and the demo).")
    ] = DEFAULT_SLACK_API_URL
    slack_show_pii: Annotated[bool, _doc("Show member identifiers unmasked in Slack messages.")] = False
    slack_post_interval_s: Annotated[
        float,
        _doc("Least time between two messages the bridge posts to one Slack channel.", ge=0, le=60),
    ] = SLACK_POST_INTERVAL_S
    slack_signing_secret: Annotated[
        Secret | None,
        _doc(
            "Signing secret of the Slack app: `POST /slack/events` (slash command, card buttons) "
            "refuses every request it does not verify."
        ),
    ] = None
    slack_app_token: Annotated[
        Secret | None,
        _doc("Slack app-level token (`xapp-...`, scope `connections:write`) for `bridge slack-socket`."),
    ] = None
    slack_command: Annotated[
        str,
        _doc("The slash command of the Slack app.", pattern=SLACK_COMMAND_PATTERN),
    ] = SLACK_COMMAND
    slack_allowed_users: Annotated[
        tuple[Annotated[str, msgspec.Meta(pattern=SLACK_USER_ID_PATTERN)], ...],
        _doc(
            "Slack user ids allowed to use the command and the card's buttons (comma-separated); "
            "empty: anyone in a channel allowed for the club."
        ),
    ] = ()
    webhook_allow_cidrs: Annotated[
        tuple[str, ...],
        _doc("Networks webhook URLs may resolve to although not public (comma-separated CIDRs)."),
    ] = ()
    webhook_allow_ports: Annotated[
        tuple[Annotated[int, msgspec.Meta(ge=1, le=65535)], ...],
        _doc(
            "Ports webhook URLs may use (comma-separated). Any port is accepted for hosts whose every "
            "address is in `BRIDGE_WEBHOOK_ALLOW_CIDRS`."
        ),
    ] = WEBHOOK_ALLOW_PORTS
    webhook_dns_servers: Annotated[
        tuple[str, ...],
        _doc(
            "DNS servers (IP addresses, comma-separated) that resolve webhook host names; empty: those "
            "of `/etc/resolv.conf`. Webhook lookups never use the system resolver's threads."
        ),
    ] = ()
    webhook_dns_port: Annotated[
        int, _doc("Port of `BRIDGE_WEBHOOK_DNS_SERVERS` (UDP and TCP).", ge=1, le=65535)
    ] = DNS_PORT
    webhook_dns_timeout_s: Annotated[
        float,
        _doc(
            "Longest a webhook host name's DNS lookup may take; then the URL is refused (at creation) "
            "or the attempt fails and is retried (at send).",
            gt=0,
            le=WEBHOOK_DNS_TIMEOUT_MAX_S,
        ),
    ] = WEBHOOK_DNS_TIMEOUT_S
    webhook_ca_bundle: Annotated[
        str | None,
        _doc(
            "Path of a PEM file of certificate authorities: https webhook receivers' certificates are "
            "verified against these instead of the default ones (certifi's, or `SSL_CERT_FILE`'s). "
            "Unset: the default ones. Either way the certificate must be valid for the URL's host "
            "name; a file a worker cannot read or load stops it at start."
        ),
    ] = None
    webhook_retry_schedule_s: Annotated[
        tuple[float, ...],
        _doc(
            "Seconds to wait before each webhook retry after a failed attempt (comma-separated; "
            "each jittered by +-20 %). One attempt plus one per entry.",
            min_length=1,
            max_length=WEBHOOK_RETRY_MAX_STEPS,
        ),
    ] = WEBHOOK_RETRY_SCHEDULE_S
    webhook_timeout_s: Annotated[
        float,
        _doc(
            "How long a webhook receiver has to answer (the whole request).", gt=0, le=WEBHOOK_TIMEOUT_MAX_S
        ),
    ] = WEBHOOK_TIMEOUT_S
    webhook_disable_after_s: Annotated[
        float,
        _doc("A subscription failing continuously this long, with no success, is disabled.", gt=0),
    ] = WEBHOOK_DISABLE_AFTER_S
    delivery_timeout_s: Annotated[
        float,
        _doc(
            "Longest run of one delivery (a webhook or Slack message) or Slack follow-up job; also how "
            "long a delivery stays leased to a worker that was killed while running it (plus its "
            "in-flight grace and 10 s) before another worker takes it. Must be longer than "
            "`BRIDGE_WEBHOOK_TIMEOUT_S`.",
            gt=0,
            le=3600,
        ),
    ] = DELIVERY_TIMEOUT_S
    notify_log: Annotated[
        bool, _doc("Also deliver every event to the log notifier (one JSON line per event).")
    ] = True
    worker_drain_s: Annotated[
        float,
        _doc(
            "On SIGTERM, how long a worker lets running polls and deliveries finish before handing the rest "
            f"back; it exits at most {WORKER_EXIT_MARGIN_S:g} s after that.",
            ge=0,
            le=3600,
        ),
    ] = 20.0
    api_drain_s: Annotated[
        float,
        _doc(
            "On SIGTERM, how long the API lets requests in flight finish (it accepts no new ones meanwhile).",
            ge=0,
            le=3600,
        ),
    ] = 10.0
    worker_poll_delay_s: Annotated[
        float,
        _doc(
            "How often an idle worker looks at its queues (due deliveries, jobs, imports due for a "
            "poll) when nothing wakes it. A fallback only: new deliveries, jobs and watches, and "
            "imports another worker hands back, wake the workers at once through Redis, and a "
            "worker wakes by itself when a retry or a poll falls due.",
            gt=0,
            le=10,
        ),
    ] = 5.0
    worker_max_jobs: Annotated[
        int,
        _doc(
            "Deliveries one worker runs at the same time (and, apart, Slack follow-up jobs).", ge=1, le=10_000
        ),
    ] = 100
    retention_s: Annotated[
        float, _doc("How long an ended watch, its timeline and its events are kept.", ge=60)
    ] = 30 * 86_400.0
    console_session_s: Annotated[
        float,
        _doc(
            "How long a console sign-in (`/ui`) lasts; sign-out ends it sooner.",
            ge=60,
            le=CONSOLE_SESSION_MAX_S,
        ),
    ] = CONSOLE_SESSION_S
    migrate_on_start: Annotated[
        bool,
        _doc(
            "Upgrade the data in Redis to this version's layout when the API or a worker starts (one "
            "process does it, the others wait). `false`: they refuse to start until `bridge migrate` ran."
        ),
    ] = True
    log_level: Annotated[Literal["debug", "info", "warning", "error"], _doc("Lowest level logged.")] = "info"
    log_format: Annotated[
        Literal["auto", "json", "console"],
        _doc("`json` lines, `console` for people, `auto`: console on a TTY."),
    ] = "auto"

    def __post_init__(self) -> None:
        if self.poll_max_interval_s < self.poll_min_interval_s:
            raise ConfigError(
                f"{env_name('poll_max_interval_s')}: must be >= {env_name('poll_min_interval_s')} "
                f"({self.poll_max_interval_s} < {self.poll_min_interval_s})"
            )
        longest_poll = 2 * (self.upstream_connect_timeout_s + self.upstream_timeout_s)
        if self.poll_lease_s <= longest_poll:
            raise ConfigError(
                f"{env_name('poll_lease_s')}: must be longer than a poll can take, "
                f"2 x ({env_name('upstream_connect_timeout_s')} + {env_name('upstream_timeout_s')})"
                f" = {longest_poll:g}s"
            )
        try:
            parse_redis_url(self.redis_url)
        except RedisUrlError as exc:
            raise ConfigError(f"{env_name('redis_url')}: {exc}") from None
        _check_url("mpc_base_url", self.mpc_base_url, ("http", "https"))
        _check_url("slack_api_url", self.slack_api_url, ("http", "https"))
        if self.slack_webhook_url is not None:
            parts = urlsplit(self.slack_webhook_url.reveal())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                # The URL is a secret (it lets anyone post): named, never shown.
                raise ConfigError(f"{env_name('slack_webhook_url')}: expected an http/https URL")
        if self.slack_app_token is not None and not self.slack_app_token.reveal().startswith(
            SLACK_APP_TOKEN_PREFIX
        ):
            raise ConfigError(
                f"{env_name('slack_app_token')}: expected an app-level token ({SLACK_APP_TOKEN_PREFIX}...)"
            )
        for key in self.secret_key:
            _check_fernet_key(key)
        short = [n for n, key in enumerate(self.api_keys, 1) if len(key.reveal()) < API_KEY_MIN_CHARS]
        if short:
            # Which one, by position: never the key itself.
            raise ConfigError(
                f"{env_name('api_keys')}: every key needs at least {API_KEY_MIN_CHARS} characters "
                f"(key {short[0]} of {len(self.api_keys)} is shorter; "
                "generate one with: openssl rand -hex 24)"
            )
        _check_webhook_schedule(self.webhook_retry_schedule_s)
        if self.delivery_timeout_s <= self.webhook_timeout_s:
            raise ConfigError(
                f"{env_name('delivery_timeout_s')}: must be longer than {env_name('webhook_timeout_s')} "
                f"({self.delivery_timeout_s:g} <= {self.webhook_timeout_s:g})"
            )
        for cidr in self.webhook_allow_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(f"{env_name('webhook_allow_cidrs')}: {cidr!r} is not a network") from None
        for server in self.webhook_dns_servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ConfigError(
                    f"{env_name('webhook_dns_servers')}: {server!r} is not an IP address "
                    f"(the port is {env_name('webhook_dns_port')})"
                ) from None

    @property
    def mpc_base(self) -> str:
        """The MPC base URL without a trailing slash."""
        return self.mpc_base_url.rstrip("/")

    @property
    def slack_mode(self) -> SlackMode | None:
        """``bot`` with a bot token (cards and threads; it wins when a webhook URL is also set,
        since only a token can update a card), ``webhook`` with only an incoming-webhook URL (one
        message per event), ``None`` without Slack. Either way only watches created with a
        ``slack`` target post there."""
        if self.slack_bot_token is not None:
            return "bot"
        if self.slack_webhook_url is not None:
            return "webhook"
        return None

    @property
    def slack_interactive(self) -> bool:
        """Whether Slack can talk back (a signing secret for ``/slack/events`` or an app token for
        Socket Mode): only then do import cards carry buttons."""
        return self.slack_signing_secret is not None or self.slack_app_token is not None

    @property
    def slack_base(self) -> str:
        """The Slack API base URL with the trailing slash slack_sdk's ``base_url`` needs."""
        return self.slack_api_url if self.slack_api_url.endswith("/") else self.slack_api_url + "/"

    def require_secret_key(self) -> tuple[Secret, ...]:
        """The keys, newest first (at least one)."""
        if not self.secret_key:
            raise ConfigError(f"{env_name('secret_key')}: required, {FERNET_KEY_HINT}")
        return self.secret_key

    def require_api_keys(self) -> tuple[Secret, ...]:
        if not self.api_keys:
            raise ConfigError(f"{env_name('api_keys')}: set at least one API key (comma-separated)")
        return self.api_keys


_SECRET_FIELDS: Final = frozenset(f.name for f in msgspec.structs.fields(Settings) if "Secret" in str(f.type))


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _check_url(field: str, value: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError(f"{env_name(field)}: expected a {'/'.join(schemes)} URL, got {value!r}")


def _check_webhook_schedule(schedule: tuple[float, ...]) -> None:
    name = env_name("webhook_retry_schedule_s")
    if any(not step > 0 for step in schedule):
        raise ConfigError(f"{name}: every wait must be a positive number of seconds")
    # Jitter adds up to 20 % and Retry-After may double a wait: the worst case must fit arq's expiry.
    worst = sum(schedule) * 1.2 * 2
    if worst > WEBHOOK_SCHEDULE_MAX_TOTAL_S:
        raise ConfigError(
            f"{name}: the schedule may take {worst:.0f}s at worst (jitter and Retry-After); "
            f"keep it under {WEBHOOK_SCHEDULE_MAX_TOTAL_S:.0f}s"
        )


def _check_fernet_key(key: Secret) -> None:
    try:
        raw = base64.urlsafe_b64decode(key.reveal().encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{env_name('secret_key')}: expected {FERNET_KEY_HINT}")


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    raise NotImplementedError(f"cannot read {kind!r} from the environment")


def _raw_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields given in ``environ``: comma lists split, empty values treated as unset."""
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        value = environ.get(env_name(field.name))
        if value is None or value.strip() == "":
            continue
        if str(field.type).startswith("typing.Annotated[tuple"):
            raw[field.name] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            raw[field.name] = value.strip()
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate :class:`Settings` from ``environ`` (default: ``os.environ``)."""
    raw = _raw_values(os.environ if environ is None else environ)
    try:
        return msgspec.convert(raw, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc, raw)) from None


def _describe(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    message, _, path = str(exc).partition(" - at `$.")
    field = path.split("`", 1)[0].split("[", 1)[0]
    if not field:  # raised by Settings.__post_init__, already naming its variable
        return message if message.startswith(ENV_PREFIX) else f"invalid configuration: {message}"
    for kind, words in _TYPE_WORDS.items():
        message = message.replace(kind, words)
    shown = "" if field in _SECRET_FIELDS else f" (got {raw.get(field)!r})"
    return f"{env_name(field)}: {message[0].lower()}{message[1:]}{shown}"


_TYPE_WORDS: Final = {
    "`float`": "a number",
    "`int`": "an integer",
    "`bool`": "true or false",
    "`str`": "text",
}


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the configuration reference."""
    rows = []
    for field in msgspec.structs.fields(Settings):
        meta = next((m for m in getattr(field.type, "__metadata__", ()) if isinstance(m, msgspec.Meta)), None)
        default = field.default
        if isinstance(default, tuple):
            shown = ",".join(f"{item:g}" if isinstance(item, float) else str(item) for item in default)
            shown = shown or "(empty)"
        elif default is None:
            shown = "(unset)"
        else:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
        rows.append((env_name(field.name), shown, meta.description if meta and meta.description else ""))
    return rows
