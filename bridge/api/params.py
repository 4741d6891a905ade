"""Query parameters shared by the list routes: numeric cursors and page sizes."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

from bridge.api.errors import ApiError
from bridge.api.schemas import CURSOR_PATTERN, PAGE_MAX, decode_cursor

Cursor = Annotated[
    str | None, Parameter(description="from a previous page's next_cursor", pattern=CURSOR_PATTERN)
]
Limit = Annotated[int, Parameter(ge=1, le=PAGE_MAX, description="items per page")]


def offset_of(cursor: str | None) -> int:
    """The position a cursor stands for (400 if it is not one)."""
    offset = decode_cursor(cursor)
    if offset is None:
        raise ApiError(400, "invalid_cursor", "cursor is not one this API gave out")
    return offset
