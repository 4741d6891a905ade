"""``bridge demo`` as a user runs it: stopped early, it leaves no process behind."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from typing import Final

import pytest

from bridge_tools.processes import redis_answers

pytestmark = pytest.mark.slow

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
REDIS_LINE: Final = re.compile(r"Redis\s+127\.0\.0\.1:(\d+)")


def test_sigterm_stops_the_demo_and_everything_it_started() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert demo.stdout is not None
        port = None
        deadline = time.monotonic() + START_TIMEOUT_S
        for line in demo.stdout:
            if (found := REDIS_LINE.search(line)) is not None:
                port = int(found.group(1))
            if "Events as they happen" in line or time.monotonic() > deadline:
                break
        assert port is not None and redis_answers(port)
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=STOP_TIMEOUT_S)
        assert demo.returncode == 130
        assert not redis_answers(port)  # its redis-server (and the rest, stopped alike) is gone
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()


SLACK_LINE: Final = re.compile(
    r"signed as Slack sends it: (python -m bridge_tools\.slack_command .+?); the card"
)


def test_the_demo_prints_the_slack_command_and_the_line_it_prints_works() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert demo.stdout is not None
        typed = signed = None
        deadline = time.monotonic() + START_TIMEOUT_S
        for line in demo.stdout:
            if "a person would type: /mpc-watch " in line:
                typed = line
            if (found := SLACK_LINE.search(line)) is not None:
                signed = found.group(1)
            if "Events as they happen" in line or time.monotonic() > deadline:
                break
        assert typed is not None and signed is not None
        argv = shlex.split(signed)
        sent = subprocess.run(
            [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=60, check=False
        )
        # The demo watches the same import in the same channel already: the command finds that watch.
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("Already watching the whole import"), sent.stdout
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=STOP_TIMEOUT_S)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
            if demo.stdout is not None:
                demo.stdout.close()
