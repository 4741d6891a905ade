"""The short chaos run of scenarios 1-3 (crash, graceful, redis): real processes, exit code 0."""

from __future__ import annotations

import subprocess
import sys
from typing import Final

import pytest

pytestmark = pytest.mark.slow

SCENARIOS: Final = "crash,graceful,redis"
TIMEOUT_S: Final = 240
"""The three take about 90 s on a 2-core machine; a loaded one gets room, a hang does not."""


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_crash_graceful_and_redis_scenarios_pass_in_their_short_form() -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "chaos", "--short", "--only", SCENARIOS],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"python -m chaos --short took over {TIMEOUT_S}s:\n{exc.stdout or ''}")
    assert done.returncode == 0, f"chaos failed:\n{done.stdout}\n{done.stderr[-5000:]}"
