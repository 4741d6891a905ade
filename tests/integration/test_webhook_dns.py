"""Webhook host names resolved through a real DNS server on 127.0.0.1 (``bridge_tools.dns_server``):
answers go through the SSRF guard, a server that never answers costs at most the DNS timeout, and
those lookups leave the thread pool the MPC client resolves on alone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.delivery.model import SendResult
from bridge.delivery.service import RetryLater
from bridge.webhooks.dns import AioDnsLookup
from bridge.webhooks.guard import REFUSAL_MESSAGE, Refused
from bridge.webhooks.model import event_delivery_id
from bridge_tools.dns_server import DnsServer
from bridge_tools.webhook_receiver import WebhookReceiver
from mpc_simulator import RunningSimulator, SimulatorControl
from tests.integration.conftest import SLUG, Pipeline
from tests.integration.test_pipeline import IMPORT, spec
from tests.integration.webhooks_helpers import Webhooks, make_event

HOOK: Final = "hooks/dns"
DNS_TIMEOUT_S: Final = 0.5
WEBHOOK_TIMEOUT_S: Final = 10.0
"""Far longer than the DNS timeout: an attempt that ended early ended because of the DNS timeout."""
STUCK_DELIVERIES: Final = 10
"""As many as the test sender's connections: each of them resolves at once."""
LONG_DNS_TIMEOUT_S: Final = 1.5


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as running:
        yield running


@pytest.fixture
def black_hole() -> Iterator[DnsServer]:
    """A DNS server that reads every question and answers none."""
    with DnsServer(black_hole=True) as server:
        yield server


@pytest.fixture
async def webhooks_through(redis: Any) -> AsyncIterator[Callable[..., Webhooks]]:
    made: list[Webhooks] = []

    def make(dns: DnsServer, dns_timeout_s: float = DNS_TIMEOUT_S, **options: Any) -> Webhooks:
        lookup = AioDnsLookup(timeout_s=dns_timeout_s, servers=["127.0.0.1"], port=dns.port)
        made.append(Webhooks(redis, lookup=lookup, timeout_s=WEBHOOK_TIMEOUT_S, **options))
        return made[-1]

    try:
        yield make
    finally:
        for webhooks in made:
            await webhooks.close()


async def test_a_name_is_resolved_through_the_configured_server_and_delivered(
    webhooks_through: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    with DnsServer({"hooks.test": ["127.0.0.1"]}) as dns:
        webhooks = webhooks_through(dns)  # 127.0.0.0/8 allow-listed, as in every webhook test
        sid, _ = await webhooks.subscribe(f"http://hooks.test:{receiver.port}/{HOOK}")
        assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    [got] = receiver.requests(HOOK)
    assert got.headers["host"] == f"hooks.test:{receiver.port}"
    assert "hooks.test" in dns.questions


async def test_a_name_answered_with_a_private_address_is_refused_and_nothing_is_sent(
    webhooks_through: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    with DnsServer({"hooks.test": ["127.0.0.1"]}) as dns:
        webhooks = webhooks_through(dns, allow=())  # loopback is private again
        with pytest.raises(Refused) as refused:
            await webhooks.guard.check(f"https://hooks.test:8443/{HOOK}")
        assert "loopback" in refused.value.reason and str(refused.value) == REFUSAL_MESSAGE
        # Stored before the check could see it (or the name changed since): refused at send time.
        sid, _ = await webhooks.subscribe(f"https://hooks.test:8443/{HOOK}")
        event = make_event()
        assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    assert receiver.requests() == []
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None
    [attempt] = record.attempts
    assert (attempt.error, attempt.detail, attempt.status_code) == ("blocked", REFUSAL_MESSAGE, None)


async def test_a_name_that_does_not_exist_is_refused_with_the_same_message(
    webhooks_through: Callable[..., Webhooks],
) -> None:
    with DnsServer({"hooks.test": ["93.184.216.34"]}) as dns:
        webhooks = webhooks_through(dns)
        assert await webhooks.guard.check("https://hooks.test/")
        with pytest.raises(Refused) as refused:
            await webhooks.guard.check("https://nowhere.test/")
    assert "does not resolve" in refused.value.reason and str(refused.value) == REFUSAL_MESSAGE


async def test_a_name_answered_with_any_non_public_address_among_public_ones_is_refused(
    webhooks_through: Callable[..., Webhooks],
) -> None:
    answers = {
        "mixed.test": ["93.184.216.34", "169.254.169.254"],
        "zero.test": ["0.0.0.0"],
        "mapped.test": ["93.184.216.34", "::ffff:7f00:1"],
        "ula.test": ["fd00::1"],
    }
    with DnsServer(answers) as dns:
        webhooks = webhooks_through(dns, allow=())
        for name in answers:
            with pytest.raises(Refused) as refused:
                await webhooks.guard.check(f"https://{name}/")
            assert "non-public" in refused.value.reason, name


@pytest.mark.parametrize(
    "garbage",
    [
        b"",  # only the id
        b"\x81\x80",  # a header cut short
        b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00",  # five answers announced, none there
        b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + b"\xc0\x0c" * 2000,  # pointers looping
        b"\xff" * 4000,
    ],
)
async def test_a_server_answering_garbage_is_a_refusal_not_a_crash(
    webhooks_through: Callable[..., Webhooks], garbage: bytes
) -> None:
    with DnsServer(garbage=garbage) as dns:
        webhooks = webhooks_through(dns)
        started = time.monotonic()
        with pytest.raises(Refused) as refused:
            await webhooks.guard.check("https://hooks.test/")
    assert str(refused.value) == REFUSAL_MESSAGE
    assert time.monotonic() - started < DNS_TIMEOUT_S + 1.0


@settings(max_examples=60, deadline=None)
@given(host=st.text(min_size=1, max_size=300))
def test_any_host_name_is_resolved_or_refused_never_raised_otherwise(host: str) -> None:
    async def attempt() -> None:
        lookup = AioDnsLookup(timeout_s=DNS_TIMEOUT_S, servers=["127.0.0.1"], port=dns.port)
        try:
            await lookup(host, 443)
        except OSError:
            pass
        finally:
            await lookup.aclose()

    with DnsServer({"hooks.test": ["93.184.216.34"]}) as dns:
        asyncio.run(attempt())


async def test_a_black_holed_dns_server_fails_the_check_within_the_dns_timeout(
    webhooks_through: Callable[..., Webhooks], black_hole: DnsServer
) -> None:
    webhooks = webhooks_through(black_hole)
    started = time.monotonic()
    with pytest.raises(Refused) as refused:
        await webhooks.guard.check("https://hooks.test/")
    took = time.monotonic() - started
    assert DNS_TIMEOUT_S * 0.9 <= took < DNS_TIMEOUT_S + 1.0
    assert "no DNS answer within" in refused.value.reason
    assert black_hole.questions and set(black_hole.questions) == {"hooks.test"}


async def test_a_black_holed_dns_server_fails_the_attempt_within_the_dns_timeout_and_it_is_retried(
    webhooks_through: Callable[..., Webhooks], black_hole: DnsServer
) -> None:
    webhooks = webhooks_through(black_hole)
    sid, _ = await webhooks.subscribe(f"https://hooks.test/{HOOK}")
    event = make_event()
    started = time.monotonic()
    result = await webhooks.deliver(event, sid)
    assert time.monotonic() - started < DNS_TIMEOUT_S + 1.0  # not the webhook's 10 s
    assert isinstance(result, RetryLater)
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.state == "pending" and record.next_attempt_at is not None
    [attempt] = record.attempts
    assert (attempt.error, attempt.detail) == ("blocked", REFUSAL_MESSAGE)


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default thread pool, counting what is handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_webhook_lookups_never_use_the_thread_pool_the_other_clients_resolve_on(
    webhooks_through: Callable[..., Webhooks], black_hole: DnsServer
) -> None:
    loop = asyncio.get_running_loop()
    pool = CountingExecutor()
    loop.set_default_executor(pool)
    webhooks = webhooks_through(black_hole)
    sid, _ = await webhooks.subscribe(f"https://hooks.test/{HOOK}")
    events = [make_event() for _ in range(STUCK_DELIVERIES)]
    for event in events:
        await webhooks.record(event, f"sub:{sid}")
    before = pool.submitted
    stuck = [asyncio.ensure_future(webhooks.run(event.id, f"sub:{sid}")) for event in events]
    await asyncio.sleep(DNS_TIMEOUT_S / 2)
    assert not any(task.done() for task in stuck)  # every one of them waits for DNS now
    assert pool.submitted == before  # ... and none of them on the pool
    # Meanwhile the pool is free: a name resolved through it (the system resolver) comes at once.
    started = time.monotonic()
    await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert time.monotonic() - started < 0.2
    results = await asyncio.gather(*stuck)
    assert all(isinstance(result, RetryLater) for result in results)


async def test_polling_goes_on_while_deliveries_wait_for_a_black_holed_dns_server(
    webhooks_through: Callable[..., Webhooks],
    black_hole: DnsServer,
    pipeline_factory: Callable[..., Pipeline],
    simulator: RunningSimulator,
    control: SimulatorControl,
) -> None:
    # The MPC client reaches the simulator by name: it resolves too, while the webhooks' lookups hang.
    pipeline = pipeline_factory(BRIDGE_MPC_BASE_URL=simulator.url.replace("127.0.0.1", "localhost"))
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    watch = await pipeline.create(spec())
    webhooks = webhooks_through(black_hole, dns_timeout_s=LONG_DNS_TIMEOUT_S)
    sid, _ = await webhooks.subscribe(f"https://hooks.test/{HOOK}")
    events = [make_event() for _ in range(STUCK_DELIVERIES)]
    for event in events:
        await webhooks.record(event, f"sub:{sid}")
    stuck = [asyncio.ensure_future(webhooks.run(event.id, f"sub:{sid}")) for event in events]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert await pipeline.poll_due() == 1
    await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_created_number=1)
    await control.patch_bulk(SLUG, IMPORT, 2, status="failed")
    assert await pipeline.poll_due() == 1
    # Both polls ran (each well under a second) while every lookup was still waiting.
    assert time.monotonic() - started < LONG_DNS_TIMEOUT_S / 2
    assert not any(task.done() for task in stuck)
    assert "import.completed" in await pipeline.types(watch.id)
    results = await asyncio.gather(*stuck)
    assert all(isinstance(result, RetryLater) for result in results)
