"""A tiny DNS server for tests: answers A and AAAA questions from a table, over UDP on 127.0.0.1.

The webhook sender resolves host names itself (c-ares, with its own servers and timeout); this
stand-in lets tests point it at a real server that answers what the test wants:

- a name in the table gets its addresses (the A or AAAA ones the question asks for; none of that
  family is an empty NOERROR answer, as real servers give);
- any other name is NXDOMAIN;
- ``black_hole=True``: every question is read and never answered (a server that is down, or
  filtered), so a client waits for its own timeout;
- ``garbage=b"..."``: every question is answered with its id and then these bytes (a hostile or
  broken server).

``with DnsServer({"hooks.test": ["127.0.0.1"]}) as dns``: ``dns.port``, ``dns.questions``
(every name asked, in order). ``answers`` may be changed while it runs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
from types import TracebackType
from typing import Final

from bridge_tools.processes import LOOPBACK

QTYPE_A: Final = 1
QTYPE_AAAA: Final = 28
QCLASS_IN: Final = 1
RCODE_NXDOMAIN: Final = 3
RCODE_FORMERR: Final = 1
FLAGS_RESPONSE: Final = 0x8180
"""QR (a response), RD copied as set, RA: a recursive server's usual answer."""
TTL_S: Final = 1
HEADER: Final = struct.Struct("!HHHHHH")
MAX_NAME_LABELS: Final = 128
MAX_PACKET_BYTES: Final = 4096
POLL_S: Final = 0.05
"""How often the serving thread looks whether it should stop."""
STOP_WAIT_S: Final = 2.0


def _question(packet: bytes) -> tuple[str, int, int, int] | None:
    """(name, qtype, qclass, end of the question) of a query, ``None`` if it cannot be read."""
    offset = HEADER.size
    labels: list[str] = []
    try:
        while len(labels) < MAX_NAME_LABELS:
            length = packet[offset]
            offset += 1
            if length == 0:
                break
            if length > 63:  # a compression pointer has no place in a question
                return None
            labels.append(packet[offset : offset + length].decode("ascii"))
            offset += length
        qtype, qclass = struct.unpack_from("!HH", packet, offset)
    except (IndexError, UnicodeDecodeError, struct.error):
        return None
    return ".".join(labels).lower(), qtype, qclass, offset + 4


def answer(packet: bytes, answers: dict[str, list[str]]) -> bytes | None:
    """The response to one query packet (``None``: not even a header to answer)."""
    if len(packet) < HEADER.size:
        return None
    query_id, flags, _, _, _, _ = HEADER.unpack_from(packet)
    question = _question(packet)
    if question is None:
        return HEADER.pack(query_id, FLAGS_RESPONSE | RCODE_FORMERR, 0, 0, 0, 0)
    name, qtype, qclass, end = question
    asked = packet[HEADER.size : end]
    response_flags = FLAGS_RESPONSE | (flags & 0x0100)
    if name not in answers:
        return HEADER.pack(query_id, response_flags | RCODE_NXDOMAIN, 1, 0, 0, 0) + asked
    records = b""
    count = 0
    for text in answers[name]:
        address = ipaddress.ip_address(text)
        wanted = QTYPE_A if address.version == 4 else QTYPE_AAAA
        if qclass != QCLASS_IN or qtype != wanted:
            continue
        data = address.packed
        # 0xC00C: the name is the one in the question (a compression pointer to offset 12).
        records += struct.pack("!HHHIH", 0xC00C, qtype, QCLASS_IN, TTL_S, len(data)) + data
        count += 1
    return HEADER.pack(query_id, response_flags, 1, count, 0, 0) + asked + records


class DnsServer:
    """A DNS server on 127.0.0.1 and a free UDP port, answering from a thread of its own (so a test
    without an event loop, or one whose loop is busy, can use it alike); see the module's docstring."""

    def __init__(
        self,
        answers: dict[str, list[str]] | None = None,
        *,
        black_hole: bool = False,
        garbage: bytes | None = None,
    ) -> None:
        self.answers = dict(answers or {})
        self.black_hole = black_hole
        self.garbage = garbage
        self.questions: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.settimeout(POLL_S)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"dns-server-{self.port}", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(MAX_PACKET_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            question = _question(data) if len(data) >= HEADER.size else None
            self.questions.append(question[0] if question else "")
            if self.black_hole:
                continue
            response = answer(data, self.answers) if self.garbage is None else data[:2] + self.garbage
            if response is not None:
                with contextlib.suppress(OSError):
                    self._sock.sendto(response, peer)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=STOP_WAIT_S)
        self._sock.close()
