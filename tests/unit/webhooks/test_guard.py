"""The SSRF guard: every refused range, every spelling of those addresses, the allow-list, DNS."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.webhooks.dns import AioDnsLookup
from bridge.webhooks.guard import (
    PREFLIGHTS_KEPT_MAX,
    REFUSAL_MESSAGE,
    AddressPolicy,
    Refused,
    Target,
    UrlGuard,
    legacy_ipv4,
    literal_address,
    parse_target,
)

SYSTEM_DNS = AioDnsLookup(timeout_s=2.0)
"""The servers of /etc/resolv.conf, and /etc/hosts: only ever asked about ``localhost`` here."""
DEFAULT = UrlGuard(AddressPolicy(), SYSTEM_DNS)
LOOPBACK_ALLOWED = UrlGuard(AddressPolicy(["127.0.0.0/8"]), SYSTEM_DNS)


@contextmanager
def refused_because(pattern: str) -> Iterator[None]:
    """Expects a :class:`Refused` whose (log-only) reason matches ``pattern``, and whose message,
    what callers see, is the one generic message."""
    with pytest.raises(Refused) as refused:
        yield
    assert re.search(pattern, refused.value.reason), refused.value.reason
    assert str(refused.value) == REFUSAL_MESSAGE


def table(entries: dict[str, list[str]], asked: list[str] | None = None) -> UrlGuard:
    """A guard whose resolver answers from ``entries`` (no DNS in tests)."""

    async def lookup(host: str, port: int) -> list[str]:
        if asked is not None:
            asked.append(host)
        if host not in entries:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return entries[host]

    return UrlGuard(AddressPolicy(), lookup)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "RFC 1918"),
        ("172.16.0.1", "RFC 1918"),
        ("172.31.255.255", "RFC 1918"),
        ("192.168.1.1", "RFC 1918"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "this host"),
        ("0.1.2.3", "this host"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "documentation"),
        ("198.18.0.1", "special-purpose"),
        ("[::1]", "loopback"),
        ("[::]", "unspecified"),
        ("[fc00::1]", "unique local"),
        ("[fd12:3456:789a::1]", "unique local"),
        ("[fe80::1]", "link-local"),
        ("[ff02::1]", "multicast"),
        ("[::ffff:127.0.0.1]", "IPv4-mapped"),
        ("[::ffff:7f00:1]", "IPv4-mapped"),
        ("[::ffff:169.254.169.254]", "IPv4-mapped"),
        ("[::ffff:8.8.8.8]", "IPv4-mapped"),
        ("[::127.0.0.1]", "IPv4-compatible"),
        ("[::a9fe:a9fe]", "IPv4-compatible"),
        ("[64:ff9b::7f00:1]", "NAT64"),
        ("[2002:7f00:1::1]", "6to4"),
        ("[2001:0:7f00:1::1]", "Teredo"),
        ("[2001:db8::1]", "documentation"),
    ],
)
def test_non_public_ip_literals_are_refused_with_their_reason(address: str, reason: str) -> None:
    with refused_because(reason):
        DEFAULT.preflight(f"https://{address}/hook")


@pytest.mark.parametrize(
    "spelling",
    [
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f000001",
        "0x7f.1",
        "0x7F.0.0.1",
        "017700000001",  # octal
        "0177.0.0.1",
        "0177.1",
        "127.1",
        "127.0.1",
        "2852039166",  # 169.254.169.254
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "0xa9.0xfe.0xa9.0xfe",
        "167772161",  # 10.0.0.1
        "012.0.0.1",
        "0",  # 0.0.0.0
        "0x0",
        "3232235777",  # 192.168.1.1
    ],
)
def test_numeric_spellings_of_refused_addresses_are_refused(spelling: str) -> None:
    address = literal_address(spelling)
    assert address is not None and not address.is_global
    # httpx itself refuses the dotted forms with a leading zero; the guard refuses the rest
    with refused_because(r"non-public|not a valid URL"):
        DEFAULT.preflight(f"https://{spelling}/")


def test_numeric_spellings_are_refused_even_when_allow_listed_only_the_usual_form_connects() -> None:
    assert LOOPBACK_ALLOWED.preflight("http://127.0.0.1:8080/hook").host == "127.0.0.1"
    for spelling in ("2130706433", "0x7f.1", "017700000001", "127.1"):
        with refused_because(r"write the address as 127\.0\.0\.1"):
            LOOPBACK_ALLOWED.preflight(f"http://{spelling}:8080/")


@settings(max_examples=300)
@given(
    value=st.integers(min_value=0, max_value=2**32 - 1),
    parts=st.integers(min_value=1, max_value=4),
    bases=st.lists(st.sampled_from(["dec", "hex", "HEX", "oct"]), min_size=4, max_size=4),
)
def test_numeric_spellings_read_as_the_system_resolver_reads_them(
    value: int, parts: int, bases: list[str]
) -> None:
    widths = [1] * (parts - 1) + [4 - (parts - 1)]
    raw = value.to_bytes(4, "big")
    numbers, offset = [], 0
    for width in widths:
        numbers.append(int.from_bytes(raw[offset : offset + width], "big"))
        offset += width

    def spell(number: int, base: str) -> str:
        return {"dec": str(number), "hex": hex(number), "HEX": f"0X{number:X}", "oct": f"0{number:o}"}[base]

    spelling = ".".join(spell(n, b) for n, b in zip(numbers, bases, strict=False))
    expected = ipaddress.IPv4Address(socket.inet_aton(spelling))  # glibc's reading
    assert legacy_ipv4(spelling) == expected == ipaddress.IPv4Address(value)


@pytest.mark.parametrize("host", ["example.com", "1e100.net", "0x.example", "127.0.0.1.nip.io", "1.2.3.4.5"])
def test_dns_names_are_not_mistaken_for_addresses(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize("host", ["0x100000000", "256.256.256.256.", "4294967296", "1.16777216"])
def test_numeric_hosts_that_are_no_address_are_refused(host: str) -> None:
    with pytest.raises(Refused):
        literal_address(host)


def test_public_https_passes_and_plain_http_needs_the_allow_list() -> None:
    assert DEFAULT.preflight("https://8.8.8.8/hook").port == 443
    assert DEFAULT.preflight("https://[2606:4700:4700::1111]:8443/x").port == 8443
    with refused_because("plain http"):
        DEFAULT.preflight("http://8.8.8.8/hook")
    with refused_because("non-public"):
        DEFAULT.preflight("http://127.0.0.1/hook")
    assert LOOPBACK_ALLOWED.preflight("http://127.0.0.1/hook").scheme == "http"


def test_the_allow_list_covers_only_its_own_family_and_range() -> None:
    policy = AddressPolicy(["127.0.0.0/8", "10.20.0.0/16"])
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.20.1.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.1.1")) is not None
    # 127.0.0.0/8 does not let the IPv4-mapped spelling of 127.0.0.1 through
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is not None
    assert AddressPolicy(["::1/128"]).refusal(ipaddress.ip_address("::1")) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "must be https"),
        ("file:///etc/passwd", "must be https"),
        ("gopher://example.com/", "must be https"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://example.com/#frag", "fragment"),
        ("https:///nohost", "no host"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/\nx", "whitespace"),
        ("https://" + "a" * 3000 + ".com/", "longer than"),
        ("not a url", "whitespace"),
        ("https://[::1/", "not a valid URL"),
    ],
)
def test_unacceptable_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with refused_because(reason):
        parse_target(url)


async def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    guard = table({"mixed.test": ["93.184.216.34", "10.0.0.5"], "meta.test": ["169.254.169.254"]})
    with refused_because(r"mixed\.test resolves to a non-public address"):
        await guard.check("https://mixed.test/hook")
    with refused_because("link-local"):
        await guard.check("https://meta.test/hook")


async def test_a_refusal_for_a_name_does_not_reveal_the_internal_address() -> None:
    guard = table({"internal.test": ["10.9.8.7"]})
    with pytest.raises(Refused) as refused:
        await guard.check("https://internal.test/")
    assert "10.9.8.7" not in refused.value.reason


async def test_a_name_resolving_to_public_addresses_only_passes() -> None:
    guard = table({"hooks.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    addresses = await guard.check("https://hooks.test/hook")
    assert [str(a) for a in addresses] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]


async def test_an_unresolvable_name_is_refused() -> None:
    with refused_because("does not resolve"):
        await table({}).check("https://nowhere.test/")
    with refused_because("does not resolve"):
        await table({"empty.test": []}).check("https://empty.test/")


async def test_localhost_resolves_to_loopback_from_the_hosts_file_and_is_refused() -> None:
    with refused_because("loopback"):
        await DEFAULT.check("https://localhost:8443/hook")


async def test_resolving_asks_once_and_returns_every_checked_address() -> None:
    asked: list[str] = []
    guard = table({"hooks.test": ["93.184.216.34", "2606:4700::1"]}, asked)
    resolved = await guard.resolve("hooks.test", 443, plain_http=False)
    assert asked == ["hooks.test"]
    assert [str(a) for a in resolved] == ["93.184.216.34", "2606:4700::1"]


async def test_a_refusal_is_an_os_error_so_that_inside_the_connector_no_socket_opens() -> None:
    guard = table({"rebind.test": ["10.0.0.1"]})
    with pytest.raises(OSError, match="not accepted as a webhook destination") as refused:
        await guard.resolve("rebind.test", 443, plain_http=False)
    assert isinstance(refused.value, Refused) and "non-public" in refused.value.reason


async def test_plain_http_is_resolved_for_allow_listed_addresses_only() -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return {"local.test": ["127.0.0.1"], "public.test": ["93.184.216.34"]}[host]

    guard = UrlGuard(AddressPolicy(["127.0.0.0/8"]), lookup)
    assert [str(a) for a in await guard.resolve("local.test", 80, plain_http=True)] == ["127.0.0.1"]
    with refused_because("plain http"):
        await guard.resolve("public.test", 80, plain_http=True)


# ------------------------------------------------------------------ ports


@pytest.mark.parametrize("port", [443, 8443])
def test_the_https_ports_pass_by_default(port: int) -> None:
    assert DEFAULT.preflight(f"https://8.8.8.8:{port}/hook").port == port


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8:8080/", "https://8.8.8.8:22/", "https://[2606:4700::1]:6379/"]
)
def test_other_ports_are_refused_for_public_addresses(url: str) -> None:
    with refused_because(r"port \d+ is not allowed"):
        DEFAULT.preflight(url)


def test_the_allowed_ports_are_configurable() -> None:
    guard = UrlGuard(AddressPolicy(allow_ports=(443, 9443)), SYSTEM_DNS)
    assert guard.preflight("https://8.8.8.8:9443/").port == 9443
    with refused_because("port 8443 is not allowed"):
        guard.preflight("https://8.8.8.8:8443/")


def test_any_port_is_allowed_for_allow_listed_addresses() -> None:
    assert LOOPBACK_ALLOWED.preflight("http://127.0.0.1:8080/hook").port == 8080
    assert LOOPBACK_ALLOWED.preflight("https://127.0.0.1:6379/").port == 6379


async def test_a_name_on_another_port_is_refused_before_any_lookup_when_nothing_is_allow_listed() -> None:
    asked: list[str] = []
    guard = table({"hooks.test": ["93.184.216.34"]}, asked)
    with refused_because("port 8080 is not allowed"):
        await guard.check("https://hooks.test:8080/")
    assert asked == []
    assert await guard.check("https://hooks.test:8443/")


async def test_a_name_on_another_port_passes_only_when_all_its_addresses_are_allow_listed() -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return {"inside.test": ["10.20.0.5"], "public.test": ["93.184.216.34"]}[host]

    guard = UrlGuard(AddressPolicy(["10.20.0.0/16"]), lookup)
    assert [str(a) for a in await guard.check("https://inside.test:9000/")] == ["10.20.0.5"]
    with refused_because("port 9000 is not allowed"):
        await guard.check("https://public.test:9000/")
    with refused_because("port 9000 is not allowed"):  # and so at send time
        await guard.resolve("public.test", 9000, plain_http=False)


# ------------------------------------------------------------------ one answer for every refusal


async def test_unresolvable_private_and_closed_port_refusals_read_the_same() -> None:
    guard = table({"private.test": ["10.0.0.1"], "public.test": ["93.184.216.34"]})
    messages = set()
    for url in (
        "https://nowhere.test/",
        "https://private.test/",
        "https://public.test:8080/",
        "https://10.0.0.1/",
        "http://public.test/",
        "ftp://public.test/",
    ):
        with pytest.raises(Refused) as refused:
            await guard.check(url)
        messages.add(str(refused.value))
    assert messages == {REFUSAL_MESSAGE}


@settings(max_examples=300)
@given(url=st.one_of(st.text(max_size=300), st.from_regex(r"\Ahttps?://[^/]{0,80}(/.{0,40})?\Z")))
def test_any_text_either_passes_the_preflight_or_is_refused_with_the_one_message(url: str) -> None:
    outcome: Target | Refused
    try:
        outcome = DEFAULT.preflight(url)
    except Refused as refused:
        outcome = refused
    if isinstance(outcome, Refused):
        assert str(outcome) == REFUSAL_MESSAGE and outcome.reason
    else:
        assert outcome.scheme == "https" and outcome.port in (443, 8443)


def test_a_preflight_is_remembered_and_a_refusal_stays_a_refusal() -> None:
    guard = UrlGuard(AddressPolicy(), SYSTEM_DNS)
    for _ in range(3):
        assert guard.preflight("https://8.8.8.8/hook") == Target(scheme="https", host="8.8.8.8", port=443)
        with refused_because("loopback"):
            guard.preflight("https://127.0.0.1/hook")
        with refused_because("must be https"):
            guard.preflight("ftp://8.8.8.8/")


def test_a_guard_remembering_many_urls_starts_over_and_still_answers() -> None:
    guard = UrlGuard(AddressPolicy(), SYSTEM_DNS)
    for n in range(PREFLIGHTS_KEPT_MAX + 10):
        assert guard.preflight(f"https://8.8.8.8/hook/{n}").port == 443
    with refused_because("loopback"):
        guard.preflight("https://127.0.0.1/hook/0")
