"""The short chaos run (``python -m chaos --short``): every scenario, real processes, exit code 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Final

import pytest

pytestmark = pytest.mark.slow

TIMEOUT_S: Final = 480
"""All six take about 140 s on a 2-core machine; a loaded one gets room, a hang does not."""
CLEANUP_S: Final = 30
"""After a timeout, SIGINT lets the run stop every process it started (by PID) before it exits."""


@pytest.mark.timeout(TIMEOUT_S + 2 * CLEANUP_S)
def test_every_guarantee_scenario_passes_in_its_short_form() -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "chaos", "--short"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = run.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGINT)
        try:
            output, _ = run.communicate(timeout=CLEANUP_S)
        except subprocess.TimeoutExpired:
            run.kill()
            output, _ = run.communicate()
        pytest.fail(f"python -m chaos --short took over {TIMEOUT_S}s:\n{output}")
    assert run.returncode == 0, f"chaos failed:\n{output[-20000:]}"
