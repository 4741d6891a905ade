"""Where webhooks may go: only public addresses on the usual ports, unless allowed (SSRF guard).

A subscription URL is checked when it is created or changed, and again at every send: its host
is resolved once (:mod:`bridge.webhooks.dns`: c-ares, its own timeout, never the thread pool the
MPC and Slack clients use), every address must be public (or inside
``BRIDGE_WEBHOOK_ALLOW_CIDRS``), the port one of ``BRIDGE_WEBHOOK_ALLOW_PORTS`` (443 and 8443),
and the connection goes to a checked address by number (:mod:`bridge.webhooks.sender`), so no
second lookup can be answered differently (DNS rebinding), while the request keeps the original
``Host`` header and TLS server name. IP literals are checked up front, along with the old numeric
spellings of IPv4 addresses (``2130706433``, ``0x7f.1``, ``017700000001``) that resolvers accept.
Plain ``http``, and any other port, are allowed only when every address is allow-listed.

Every refusal says the same :data:`REFUSAL_MESSAGE` to whoever asked: a caller must not learn
from the answer whether a name does not resolve, resolves to an internal address, or has a
closed port, or the API would map the internal network for them. The precise reason travels in
:attr:`Refused.reason`, for the bridge's own log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Literal, TypeAlias

import httpx
import msgspec

from bridge.config import WEBHOOK_ALLOW_PORTS

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Lookup: TypeAlias = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name to its addresses, raising ``OSError`` when it cannot
(:class:`bridge.webhooks.dns.AioDnsLookup`; unit tests pass a table)."""

MAX_URL_CHARS: Final = 2048
SCHEMES: Final = ("https", "http")
PREFLIGHTS_KEPT_MAX: Final = 10_000
"""URLs whose preflight a guard remembers (it depends on the URL and the policy only); past this
many it starts over."""
REFUSAL_MESSAGE: Final = (
    "this URL is not accepted as a webhook destination: it must be https, on port 443 or 8443 "
    "(or another port the operator allows), to a host that resolves only to public addresses, "
    "without credentials or a #fragment; plain http, other ports and non-public addresses are "
    "accepted only for networks the operator allows"
)
"""The one answer to every refused URL, whatever the reason (see the module's docstring)."""
_IPV4_MAX: Final = 2**32 - 1


def _nets(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


FORBIDDEN: Final[tuple[tuple[tuple[Network, ...], str], ...]] = (
    (_nets("127.0.0.0/8", "::1/128"), "loopback"),
    (_nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "private (RFC 1918)"),
    (_nets("169.254.0.0/16", "fe80::/10"), "link-local (cloud metadata lives here)"),
    (_nets("100.64.0.0/10"), "carrier-grade NAT (RFC 6598)"),
    (_nets("0.0.0.0/8", "::/128"), "'this host' / unspecified"),
    (_nets("fc00::/7", "fec0::/10"), "unique local / site-local IPv6"),
    (_nets("::ffff:0:0/96"), "IPv4-mapped IPv6"),
    (_nets("::/96"), "IPv4-compatible IPv6"),
    (_nets("64:ff9b::/96", "64:ff9b:1::/48"), "NAT64 (embeds an IPv4 address)"),
    (_nets("2002::/16"), "6to4 (embeds an IPv4 address)"),
    (_nets("2001::/32"), "Teredo (embeds an IPv4 address)"),
    (_nets("224.0.0.0/4", "ff00::/8"), "multicast"),
    (_nets("255.255.255.255/32", "240.0.0.0/4"), "reserved / broadcast"),
    (_nets("192.0.0.0/24", "198.18.0.0/15", "100::/64"), "special-purpose"),
    (_nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"), "documentation"),
)
"""Ranges refused by default, with the reason given back: everything not globally routable,
and the IPv6 forms that carry an IPv4 address inside (a way to smuggle 127.0.0.1 through)."""


class Refused(OSError):
    """A URL or an address a webhook may not go to. Its message is :data:`REFUSAL_MESSAGE`;
    ``reason`` says why, for the bridge's log only (no secret in it, and for a DNS name not the
    address it resolved to).

    An ``OSError`` so that, raised inside the connector (when a new connection is checked), it
    fails that request before any socket is opened.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSAL_MESSAGE)
        self.reason = reason


class Target(msgspec.Struct, frozen=True, kw_only=True):
    scheme: Literal["https", "http"]
    host: str
    """As in the URL, lower case, without brackets."""
    port: int


# ------------------------------------------------------------------ pure: addresses and URLs


def _ipv4_part(text: str) -> int | None:
    """One part of a numeric IPv4 spelling as inet_aton reads it: decimal, 0x-hex or 0-octal."""
    if not text or not text.isascii():
        return None
    lowered = text.lower()
    try:
        if lowered.startswith("0x"):
            return int(lowered[2:], 16) if len(lowered) > 2 else 0
        if len(lowered) > 1 and lowered.startswith("0"):
            return int(lowered[1:], 8)
        return int(lowered, 10) if lowered.isdigit() else None
    except ValueError:
        return None


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a numeric host spells the old ways (``2130706433``, ``127.1``, ``0x7f.0.0.1``,
    ``0177.0.0.1``); ``None`` when the host is not numeric. Raises :class:`Refused` when it is
    numeric but no address."""
    parts = host.removesuffix(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_ipv4_part(part) for part in parts]
    if any(value is None for value in values):
        return None
    numbers = [v for v in values if v is not None]
    head, last = numbers[:-1], numbers[-1]
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        raise Refused(f"{host} is a numeric host but no IPv4 address")
    value = 0
    for v in head:
        value = value << 8 | v
    value = value << 8 * (4 - len(head)) | last
    return ipaddress.IPv4Address(value & _IPV4_MAX)


def literal_address(host: str) -> IPAddress | None:
    """The address an IP-literal host names, in any spelling; ``None`` for a DNS name."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if ":" in bare:
        raise Refused(f"{host} is not a valid IPv6 address")
    return legacy_ipv4(bare)


def parse_target(url: str) -> Target:
    """Scheme, host and port of a webhook URL; :class:`Refused` when the URL is not acceptable."""
    if len(url) > MAX_URL_CHARS:
        raise Refused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise Refused("the URL contains whitespace or control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise Refused(f"not a valid URL: {exc}") from None
    scheme = parsed.scheme
    if scheme not in SCHEMES:
        raise Refused("the URL must be https (or http for allow-listed addresses)")
    if not parsed.host:
        raise Refused("the URL has no host")
    if parsed.userinfo:
        raise Refused("credentials in the URL are not accepted (the signature authenticates the sender)")
    if parsed.fragment:
        raise Refused("the URL may not have a #fragment")
    port = parsed.port or (443 if scheme == "https" else 80)
    return Target(scheme="https" if scheme == "https" else "http", host=parsed.host.lower(), port=port)


class AddressPolicy:
    """Which addresses webhooks may reach: public ones on the allowed ports, and anything in the
    allow-listed networks."""

    def __init__(
        self, allow_cidrs: Iterable[str] = (), allow_ports: Iterable[int] = WEBHOOK_ALLOW_PORTS
    ) -> None:
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in allow_cidrs)
        self.ports = frozenset(allow_ports)

    def allow_listed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allowed)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or ``None`` when a webhook may go there."""
        if self.allow_listed(address):
            return None
        for networks, reason in FORBIDDEN:
            if any(address.version == net.version and address in net for net in networks):
                return reason
        if not address.is_global:
            return "not a public address"
        return None


# ------------------------------------------------------------------ resolving


class UrlGuard:
    """Checks webhook URLs and hosts against an :class:`AddressPolicy`."""

    def __init__(self, policy: AddressPolicy, lookup: Lookup) -> None:
        self.policy = policy
        self._lookup = lookup
        self._preflights: dict[str, Target | str] = {}
        """Each URL's preflight: its target, or why it is refused."""

    def preflight(self, url: str) -> Target:
        """What can be checked without DNS: the URL's shape and an IP-literal host (the answer
        depends on nothing else, and a guard remembers it)."""
        known = self._preflights.get(url)
        if known is None:
            try:
                known = self._preflight(url)
            except Refused as refused:
                known = refused.reason
            if len(self._preflights) >= PREFLIGHTS_KEPT_MAX:
                self._preflights.clear()
            self._preflights[url] = known
        if isinstance(known, str):
            raise Refused(known)
        return known

    def _preflight(self, url: str) -> Target:
        target = parse_target(url)
        literal = literal_address(target.host)
        if literal is not None:
            self._check_addresses(
                target.host, [literal], port=target.port, plain_http=target.scheme == "http", literal=True
            )
            if literal.version == 4 and str(literal) != target.host:
                # aiohttp refuses these spellings too: accept only what will be connected to.
                raise Refused(f"write the address as {literal}, not {target.host}")
        elif target.port not in self.policy.ports and not self.policy.allowed:
            raise Refused(f"port {target.port} is not allowed (BRIDGE_WEBHOOK_ALLOW_PORTS)")
        return target

    async def check(self, url: str) -> list[IPAddress]:
        """Every check at once (subscription creation): the URL, then its host's addresses."""
        target = self.preflight(url)
        return await self.resolve(target.host, target.port, plain_http=target.scheme == "http")

    async def resolve(self, host: str, port: int, *, plain_http: bool) -> list[IPAddress]:
        """The host's addresses, each one checked; raises :class:`Refused` if any is refused."""
        literal = literal_address(host)
        if literal is not None:
            self._check_addresses(host, [literal], port=port, plain_http=plain_http, literal=True)
            return [literal]
        try:
            found = await self._lookup(host, port)
        except (OSError, UnicodeError) as exc:
            raise Refused(f"{host} does not resolve ({exc})") from None
        addresses: list[IPAddress] = []
        for text in found:
            try:
                addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                raise Refused(f"{host} resolves to something that is not an address") from None
        if not addresses:
            raise Refused(f"{host} does not resolve to any address")
        self._check_addresses(host, addresses, port=port, plain_http=plain_http, literal=False)
        return addresses

    async def aclose(self) -> None:
        close: Callable[[], Awaitable[None]] | None = getattr(self._lookup, "aclose", None)
        if close is not None:
            await close()

    def _check_addresses(
        self, host: str, addresses: list[IPAddress], *, port: int, plain_http: bool, literal: bool
    ) -> None:
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason is not None:
                # For a DNS name, the reason without the address: no free internal-DNS oracle.
                named = f"{host} is" if literal else f"{host} resolves to"
                raise Refused(
                    f"{named} a non-public address: {reason}; refused unless in BRIDGE_WEBHOOK_ALLOW_CIDRS"
                )
        all_allow_listed = all(self.policy.allow_listed(a) for a in addresses)
        if plain_http and not all_allow_listed:
            raise Refused("plain http is only allowed for addresses in BRIDGE_WEBHOOK_ALLOW_CIDRS: use https")
        if port not in self.policy.ports and not all_allow_listed:
            raise Refused(
                f"port {port} is not allowed: only BRIDGE_WEBHOOK_ALLOW_PORTS, "
                "or any port for addresses in BRIDGE_WEBHOOK_ALLOW_CIDRS"
            )
