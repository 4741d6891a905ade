"""The request class: JSON bodies nested too deeply are refused before they are parsed.

Parsing thousands of nested arrays ends in a RecursionError deep inside the decoder; refusing
them up front keeps that (and its cost) out of the process. Bodies are at most 64 kB, so the
scan is cheap.
"""

from __future__ import annotations

import re
from typing import Any, Final

from litestar import Request
from litestar.exceptions import ClientException

MAX_JSON_DEPTH: Final = 32
"""Deepest nesting accepted in a request body (the API's own bodies need 3)."""
_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_OPEN: Final = frozenset(b"[{")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``body`` nest deeper than ``limit`` (strings are skipped)."""
    depth = 0
    for token in _TOKENS.finditer(body):
        char = token.group()[0]
        if char in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif char != 0x22:  # a closing bracket; strings start with a quote
            depth -= 1
    return False


class BridgeRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if json_depth_exceeds(await self.body()):
            raise ClientException(f"JSON is malformed: nested deeper than {MAX_JSON_DEPTH} levels")
        return await super().json()
