"""Every identifier's shape, as one anchored regular expression each: the API's parameters and
bodies and the CLI check input against these, nowhere else.

They end in ``\\Z``, not ``$``: in Python ``$`` also matches just before a final newline, so
``"infinity-mall\\n"`` would pass as a club slug (and reach Redis keys and MPC headers). ``\\Z``
matches only at the very end. ``^`` is kept at the start for readers of the OpenAPI document.
"""

from __future__ import annotations

import re
from typing import Final

SLUG: Final = r"^[a-z0-9][a-z0-9-]{0,63}\Z"
"""An MPC loyalty club slug."""
IMPORT_ID: Final = r"^[A-Za-z0-9-]{1,64}\Z"
"""An MPC import id (a UUID in practice)."""
SLACK_CHANNEL: Final = r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CDG][A-Z0-9]{6,20})\Z"
"""A Slack channel id, or a ``#name``."""
CURSOR: Final = r"^[0-9]{1,9}\Z"
"""A list cursor: every cursor the pattern allows is a valid one."""
WATCH_ID: Final = r"^wch_[0-9a-f]{24}\Z"
SUBSCRIPTION_ID: Final = r"^sub_[0-9a-f]{24}\Z"
DELIVERY_ID: Final = r"^dlv_[0-9a-f]{24}\Z"
API_KEY_ID: Final = r"^key_[0-9a-f]{24}\Z"
DISPLAY_NAME: Final = r"^[^\x00-\x1f\x7f]+\Z"
"""A name shown in lists and logs: no control characters (newlines included)."""
EVENT_TYPE_SHAPE: Final = r"^(\*|[a-z_]{1,32}\.(\*|[a-z_]{1,32}))\Z"
"""An event type (``bulk.finished``), a family wildcard (``bulk.*``) or ``*``."""
HEADER_TOKEN: Final = r"^[\x21-\x7e]+\Z"  # noqa: S105 - a shape, not a secret
"""A value sent in an HTTP header with no spaces (an MPC token): visible ASCII only."""
HEADER_TEXT: Final = r"^[\x20-\x7e]+\Z"
"""A value sent in an HTTP header (a product name): printable ASCII, spaces allowed."""


def matches(pattern: str, value: str) -> bool:
    """Whether the whole of ``value`` has the shape (as the API checks it)."""
    return re.search(pattern, value) is not None
