"""The OpenAPI document against the running API: schemathesis generates the requests.

Stateless and stateful phases and every check, except the few ``schemathesis.toml`` switches
off, each with its reason. The run is made twice: with an admin key, and with a club key (a
managed editor key of one club), whose refusals must be documented answers too.
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
"""Per operation and phase; with 17 operations this generates well over MIN_CASES."""
SEED: Final = 20261127
KEY: Final = "fuzz-key-0123456789abcdefghijklmnopq"
CLUB_KEY_CLUB: Final = "infinity-mall"
CONFIG: Final = Path(__file__).parent / "schemathesis.toml"
"""Checks switched off, each with its reason."""

RUN_TIMEOUT_S: Final = 900
START_S: Final = 60
"""The API's start and the club key's creation, on a loaded machine."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUN_TIMEOUT_S + START_S)]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _bearer(url: str, kind: str) -> str:
    """The key the run uses: the admin key, or a managed key made with it (an editor of the club
    the document's examples name, so the explicit examples get through; the generated clubs it
    does not hold must get a documented 403, never a 5xx)."""
    if kind == "admin":
        return KEY
    made = httpx.post(
        f"{url}/v1/api-keys",
        json={"name": "schemathesis", "clubs": [CLUB_KEY_CLUB], "role": "editor"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


@pytest.mark.parametrize("kind", ["admin", "club"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    redis_url: str, redis: Any, tmp_path: Path, kind: str
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
        bearer = _bearer(url, kind)
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(CONFIG),
                "run",
                f"{url}/schema/openapi.json",
                "-H",
                f"Authorization: Bearer {bearer}",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
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
