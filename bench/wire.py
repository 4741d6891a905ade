"""Request arrivals as the kernel saw them: a ``tcpdump`` capture on loopback, read back.

The MPC stand-in logs when it read a request, which under load can be milliseconds after the
request reached its socket, by a different amount each time; at the economy scenario's time scale
a millisecond is 10 ms of MPC time. A capture taken by the kernel has no such noise, so the floor
between two requests is checked on it too. It needs ``tcpdump`` and the right to capture (root);
without them the figures are left out.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from bridge_tools.processes import Process

PCAP_MAGIC_US: Final = 0xA1B2C3D4
PCAP_MAGIC_NS: Final = 0xA1B23C4D
PCAP_HEADER_BYTES: Final = 24
RECORD_HEADER_BYTES: Final = 16
SNAPLEN: Final = 512
"""Enough of each packet for the request line."""
LISTEN_TIMEOUT_S: Final = 10.0
GET_FILTER: Final = "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420"
"""Packets whose TCP payload starts with ``GET `` (a request line)."""


def can_capture() -> bool:
    return shutil.which("tcpdump") is not None and os.geteuid() == 0


def start_capture(port: int, pcap: Path, log: Path) -> Process:
    """``tcpdump`` writing the GET requests to ``port`` on loopback into ``pcap``, once it listens."""
    argv = [
        "tcpdump",
        "-i",
        "lo",
        "-s",
        str(SNAPLEN),
        "-U",
        "-w",
        str(pcap),
        f"tcp dst port {port} and {GET_FILTER}",
    ]
    process = Process(argv, log).start()
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while b"listening on" not in (log.read_bytes() if log.exists() else b""):
        if time.monotonic() > deadline or not process.alive():
            process.stop()
            raise RuntimeError(f"tcpdump did not start (see {log})")
        time.sleep(0.05)
    return process


def get_requests(pcap: bytes) -> Iterator[tuple[float, str]]:
    """``(time, path)`` of each request line in a classic pcap file, in capture order."""
    if len(pcap) < PCAP_HEADER_BYTES:
        return
    magic = struct.unpack_from("<I", pcap)[0]
    if magic not in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        raise ValueError(f"not a little-endian pcap file (magic {magic:#x})")
    fraction = 1e9 if magic == PCAP_MAGIC_NS else 1e6
    offset = PCAP_HEADER_BYTES
    while offset + RECORD_HEADER_BYTES <= len(pcap):
        seconds, part, captured, _ = struct.unpack_from("<IIII", pcap, offset)
        packet = pcap[offset + RECORD_HEADER_BYTES : offset + RECORD_HEADER_BYTES + captured]
        offset += RECORD_HEADER_BYTES + captured
        start = packet.find(b"GET ")
        end = packet.find(b" HTTP/", start)
        if start >= 0 and end > start:
            yield seconds + part / fraction, packet[start + 4 : end].decode("latin-1")
