"""The OpenAPI document against the running API: schemathesis generates the requests.

Stateless and stateful phases and every check, except the few ``schemathesis.toml`` switches
off, each with its reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from bridge_tools.processes import Process, free_port, wait_until
from tests.integration.conftest import SECRET_KEY

MIN_CASES: Final = 1000
MAX_EXAMPLES: Final = 100
"""Per operation and phase; with 9 operations this generates well over MIN_CASES."""
SEED: Final = 20261127
KEY: Final = "fuzz-key"
CONFIG: Final = Path(__file__).parent / "schemathesis.toml"
"""Checks switched off, each with its reason."""

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S: Final = 600
"""About 2 minutes on an idle 2-core machine for the 11 operations; a loaded one gets room."""


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(RUN_TIMEOUT_S)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    redis_url: str, redis: Any, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_API_KEYS": KEY,
            "BRIDGE_SECRET_KEY": SECRET_KEY,
            "BRIDGE_LOG_LEVEL": "warning",
            "BRIDGE_LOG_FORMAT": "json",
        }
    )
    api = Process(
        [sys.executable, "-m", "bridge", "api", "--port", str(port)], tmp_path / "api.log", env
    ).start()
    try:
        wait_until(lambda: _ready(url), 30, "the API")
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(CONFIG),
                "run",
                f"{url}/schema/openapi.json",
                "-H",
                f"Authorization: Bearer {KEY}",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env=env | {"NO_COLOR": "1"},
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        generated = re.search(r"(\d+) generated", output)
        assert generated is not None and int(generated.group(1)) >= MIN_CASES, output[-2000:]
        assert " 500 " not in api.output() and "unhandled error" not in api.output()
        assert _ready(url)
    finally:
        api.stop()
