"""Webhook host names are resolved here: c-ares (through ``aiodns``), with a timeout of its own.

The system resolver (``getaddrinfo``) blocks a thread until it gives up, and asyncio runs it on
the loop's default thread pool, the one the MPC and Slack clients resolve their own hosts on.
A subscriber whose DNS server does not answer could fill that pool and stall polling, and the
lookup could take the system's full timeout (several times 5 s) out of each attempt. c-ares
instead sends the queries itself and hands the answers to the event loop; each lookup is bounded
by ``BRIDGE_WEBHOOK_DNS_TIMEOUT_S`` and can be sent to servers of its own
(``BRIDGE_WEBHOOK_DNS_SERVERS``, e.g. a resolver that answers public names only).

Written against aiodns 3.6 / pycares 4.11: a ``DNSResolver`` belongs to the event loop it was
made on, so one is made per loop, on first use.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Final

import aiodns

DNS_TRIES: Final = 2
"""Queries c-ares sends to each server before it gives up (one lost UDP packet is no failure);
each waits for its share of the timeout, so c-ares stops on its own about when the caller does."""


class AioDnsLookup:
    """A :data:`bridge.webhooks.guard.Lookup`: the addresses of a host, or ``OSError`` within
    ``timeout_s`` (no answer in time, no such name, a name that is not a valid DNS name)."""

    def __init__(self, *, timeout_s: float, servers: Sequence[str] = (), port: int | None = None) -> None:
        self.timeout_s = timeout_s
        self._servers = tuple(servers)
        self._port = port
        self._resolver: aiodns.DNSResolver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiodns.DNSResolver:
        loop = asyncio.get_running_loop()
        if self._resolver is None or self._loop is not loop:
            options: dict[str, object] = {"timeout": self.timeout_s / DNS_TRIES, "tries": DNS_TRIES}
            if self._port is not None:
                options |= {"udp_port": self._port, "tcp_port": self._port}
            self._resolver = aiodns.DNSResolver(nameservers=list(self._servers) or None, loop=loop, **options)
            self._loop = loop
        return self._resolver

    async def __call__(self, host: str, port: int) -> list[str]:
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await self._current().getaddrinfo(
                    host, family=socket.AF_UNSPEC, port=port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise TimeoutError(f"no DNS answer within {self.timeout_s:g}s") from None
        except aiodns.error.DNSError as exc:
            raise OSError(f"DNS lookup failed: {exc.args[-1] if exc.args else exc}") from None
        except (ValueError, TypeError, UnicodeError) as exc:  # a host c-ares cannot even ask for
            raise OSError(f"not a DNS name ({exc.__class__.__name__})") from None
        return list(dict.fromkeys(node.addr[0].decode("ascii") for node in result.nodes))

    async def aclose(self) -> None:
        """Ends the queries still out (one that timed out here is still awaited by c-ares for a
        moment) while the loop runs to hear of it, then closes the channel."""
        resolver, self._resolver, self._loop = self._resolver, None, None
        if resolver is not None:
            resolver.cancel()
            await resolver.close()
