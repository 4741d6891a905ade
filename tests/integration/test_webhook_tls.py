"""Webhooks over https, to a receiver on 127.0.0.1 whose certificate a CA made for the test signed.

The sender's TLS settings come from the configuration as a worker's do
(:func:`bridge.wiring.webhook_tls`): that CA is trusted only through ``BRIDGE_WEBHOOK_CA_BUNDLE``;
the certificate must be valid for the URL's host name although the connection goes to the checked
address by number; a kept connection serves many deliveries (one TLS handshake).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge import wiring
from bridge.config import load_settings
from bridge.delivery.model import SendResult
from bridge.delivery.service import RetryLater
from bridge.store import keys
from bridge.webhooks.model import destination, event_delivery_id
from bridge_tools.tls import LOOPBACK_NAMES, ServerFiles, ThrowawayCa, server_context
from bridge_tools.webhook_receiver import WebhookReceiver
from tests.integration.webhooks_helpers import FERNET_KEY, Webhooks, make_event

HOOK = "hooks/tls"
HOST = "hooks.test"
"""A name only the test's lookup knows: it resolves to 127.0.0.1."""
DELIVERIES_ON_ONE_CONNECTION = 5


async def lookup(host: str, port: int) -> list[str]:
    return {HOST: ["127.0.0.1"]}[host]


class Https:
    """A receiver serving a certificate of the test's CA, counting its TLS handshakes."""

    def __init__(self, receiver: WebhookReceiver, handshakes: list[str | None]) -> None:
        self.receiver = receiver
        self.handshakes = handshakes

    def url(self, host: str) -> str:
        return f"https://{host}:{self.receiver.port}/{HOOK}"


@contextlib.asynccontextmanager
async def https_receiver(files: ServerFiles) -> AsyncIterator[Https]:
    handshakes: list[str | None] = []
    context = server_context(files)

    def count(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        handshakes.append(name)  # called once per handshake, with the name the client asked for

    context.sni_callback = count
    async with WebhookReceiver(ssl_context=context) as receiver:
        yield Https(receiver, handshakes)


@pytest.fixture
def ca() -> ThrowawayCa:
    return ThrowawayCa()


@pytest.fixture
def bundle(ca: ThrowawayCa, tmp_path: Path) -> Path:
    return ca.write_bundle(tmp_path / "webhook-ca.pem")


def configured_tls(bundle: Path | None) -> ssl.SSLContext:
    """The sender's TLS settings as a worker configured so would have them."""
    env = {"BRIDGE_SECRET_KEY": FERNET_KEY}
    if bundle is not None:
        env["BRIDGE_WEBHOOK_CA_BUNDLE"] = str(bundle)
    return wiring.webhook_tls(load_settings(env))


@pytest.mark.parametrize(
    ("host", "names"),
    [pytest.param(HOST, (HOST,), id="host-name"), pytest.param("127.0.0.1", LOOPBACK_NAMES, id="ip-address")],
)
async def test_a_receiver_whose_certificate_the_configured_ca_signed_gets_its_webhook(
    webhooks_factory: Callable[..., Webhooks],
    ca: ThrowawayCa,
    bundle: Path,
    tmp_path: Path,
    host: str,
    names: tuple[str, ...],
) -> None:
    async with https_receiver(ca.issue(tmp_path, names)) as https:
        webhooks = webhooks_factory(lookup=lookup, ssl_context=configured_tls(bundle))
        sid, secret = await webhooks.subscribe(https.url(host))
        https.receiver.set_secrets(HOOK, [secret])
        event = make_event()
        assert await webhooks.deliver(event, sid) == SendResult.delivered()
        [got] = https.receiver.requests(HOOK)
        assert got.verified and got.webhook_id == event.id
        assert got.headers["host"] == f"{host}:{https.receiver.port}"
        record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
        assert record is not None and record.state == "delivered"
        assert [a.status_code for a in record.attempts] == [204]


async def assert_tls_failure(webhooks: Webhooks, https: Https, sid: str, *words: str) -> None:
    """One attempt, failed as ``tls`` in the attempt log; nothing reached the receiver; the
    delivery waits for its retry, not delivered."""
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.state == "pending"
    [attempt] = record.attempts
    assert attempt.error == "tls" and attempt.status_code is None, attempt
    for word in words:
        assert word in attempt.detail, attempt.detail
    assert https.receiver.requests(HOOK) == []
    assert not await webhooks.events.was_delivered(event.id, destination(sid))
    entry = keys.outbox_entry(event.id, destination(sid))
    assert await webhooks.redis.zscore(keys.OUTBOX, entry) is not None


async def test_without_the_bundle_the_same_delivery_fails_as_tls_in_the_attempt_log(
    webhooks_factory: Callable[..., Webhooks], ca: ThrowawayCa, tmp_path: Path
) -> None:
    async with https_receiver(ca.issue(tmp_path, (HOST,))) as https:
        webhooks = webhooks_factory(
            lookup=lookup, ssl_context=configured_tls(None)
        )  # the default authorities only
        sid, _ = await webhooks.subscribe(https.url(HOST))
        await assert_tls_failure(webhooks, https, sid, "certificate verify failed")


@pytest.mark.parametrize(
    ("host", "names", "words"),
    [
        # Connected to 127.0.0.1, which the certificate names, but the URL's host is another.
        pytest.param(HOST, LOOPBACK_NAMES, ("Hostname mismatch", HOST), id="pinned-address-named-not-host"),
        pytest.param("127.0.0.1", ("elsewhere.test",), ("IP address mismatch",), id="other-name"),
    ],
)
async def test_a_certificate_for_another_host_is_a_tls_failure(
    webhooks_factory: Callable[..., Webhooks],
    ca: ThrowawayCa,
    bundle: Path,
    tmp_path: Path,
    host: str,
    names: tuple[str, ...],
    words: tuple[str, ...],
) -> None:
    async with https_receiver(ca.issue(tmp_path, names)) as https:
        webhooks = webhooks_factory(lookup=lookup, ssl_context=configured_tls(bundle))
        sid, _ = await webhooks.subscribe(https.url(host))
        await assert_tls_failure(webhooks, https, sid, *words)


async def test_deliveries_over_https_share_one_connection_and_one_handshake(
    webhooks_factory: Callable[..., Webhooks], ca: ThrowawayCa, bundle: Path, tmp_path: Path
) -> None:
    async with https_receiver(ca.issue(tmp_path, (HOST,))) as https:
        webhooks = webhooks_factory(lookup=lookup, ssl_context=configured_tls(bundle))
        sid, _ = await webhooks.subscribe(https.url(HOST))
        for _ in range(DELIVERIES_ON_ONE_CONNECTION):
            assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
        got = https.receiver.requests(HOOK)
        assert len(got) == DELIVERIES_ON_ONE_CONNECTION
        assert len({received.peer for received in got}) == 1
        assert https.handshakes == [HOST]  # the name sent for SNI, once
