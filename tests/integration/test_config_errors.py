"""Every command meets a configuration error the same way: one line naming the variable or option
and what is expected, exit code 2, no traceback — as an operator reads it in a container's log.

Each case is a real process (``python -m bridge ...``, arq's own CLI) with a clean environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.exits import EXIT_CONFIG
from tests.integration.conftest import SECRET_KEY

BIN = Path(sys.executable).parent
BASE_ENV = {"PATH": f"{BIN}:/usr/bin:/bin", "BRIDGE_LOG_FORMAT": "json"}
UNUSED_REDIS = {"BRIDGE_REDIS_URL": "redis://127.0.0.1:9/0"}
"""Never reached: each case stops at its configuration first (port 9 is discard, nothing listens)."""


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=BASE_ENV | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def bridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", *args]


def assert_one_line(result: subprocess.CompletedProcess[str], prefix: str, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == EXIT_CONFIG, result.stdout + result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("argv", "env", "prefix", "words"),
    [
        pytest.param(
            bridge("api"),
            UNUSED_REDIS | {"BRIDGE_SECRET_KEY": SECRET_KEY},
            "mpc-import-bridge api: BRIDGE_API_KEYS:",
            ("at least one API key",),
            id="api-without-api-keys",
        ),
        pytest.param(
            bridge("api"),
            UNUSED_REDIS | {"BRIDGE_API_KEYS": "k" * 32},
            "mpc-import-bridge api: BRIDGE_SECRET_KEY:",
            ("required", "Fernet key"),
            id="api-without-secret-key",
        ),
        pytest.param(
            bridge("api"),
            UNUSED_REDIS | {"BRIDGE_API_KEYS": "k" * 32 + ",short-key", "BRIDGE_SECRET_KEY": SECRET_KEY},
            "mpc-import-bridge api: BRIDGE_API_KEYS:",
            ("at least 32 characters", "key 2 of 2"),
            id="api-with-a-short-key",
        ),
        pytest.param(
            bridge("api"),
            {"BRIDGE_API_DRAIN_S": "soon"},
            "mpc-import-bridge api: BRIDGE_API_DRAIN_S:",
            ("expected a number",),
            id="api-with-a-wrong-number",
        ),
        pytest.param(
            bridge("worker"),
            UNUSED_REDIS,
            "mpc-import-bridge worker: BRIDGE_SECRET_KEY:",
            ("required", "Fernet key"),
            id="worker-without-secret-key",
        ),
        pytest.param(
            bridge("worker"),
            {"BRIDGE_SECRET_KEY": SECRET_KEY, "BRIDGE_REDIS_URL": "http://redis:6379"},
            "mpc-import-bridge worker: BRIDGE_REDIS_URL:",
            ("expected a redis",),
            id="worker-with-a-wrong-redis-url",
        ),
        pytest.param(
            bridge("worker", "--check"),
            {"BRIDGE_REDIS_URL": "redis://"},
            "mpc-import-bridge worker: BRIDGE_REDIS_URL:",
            (),
            id="worker-check-with-a-wrong-redis-url",
        ),
        pytest.param(
            bridge("healthcheck", "--role", "worker"),
            {"BRIDGE_REDIS_URL": "mysql://db"},
            "mpc-import-bridge healthcheck: BRIDGE_REDIS_URL:",
            ("expected a redis",),
            id="healthcheck-with-a-wrong-redis-url",
        ),
        pytest.param(
            bridge("healthcheck", "--role", "scheduler"),
            {},
            "mpc-import-bridge healthcheck: Invalid value for '--role':",
            ("'api', 'worker', 'simulator'",),
            id="healthcheck-with-a-wrong-role",
        ),
        pytest.param(
            bridge("simulator", "--port", "70000"),
            {},
            "mpc-import-bridge simulator: Invalid value for '--port':",
            ("0<=x<=65535",),
            id="simulator-with-a-wrong-port",
        ),
        pytest.param(
            bridge("simulator", "--club", "no-token"),
            {},
            "mpc-import-bridge simulator: Invalid value for '--club':",
            ("expected SLUG=TOKEN",),
            id="simulator-with-a-wrong-club",
        ),
        pytest.param(
            bridge("demo", "--time-scale", "0"),
            {},
            "mpc-import-bridge demo: Invalid value for '--time-scale':",
            ("x>0.0",),
            id="demo-with-a-wrong-time-scale",
        ),
        pytest.param(
            bridge("config-reference", "--format", "yaml"),
            {},
            "mpc-import-bridge config-reference: Invalid value for '--format':",
            ("'markdown', 'env'",),
            id="config-reference-with-a-wrong-format",
        ),
        pytest.param(
            bridge("watch", "create", "--import-id", "x"),
            {},
            "mpc-import-bridge watch create: Missing option '--club'",
            ("bridge watch create --help",),
            id="watch-create-without-a-club",
        ),
        pytest.param(
            bridge("schedule"),
            {},
            "mpc-import-bridge: No such command 'schedule'",
            ("bridge --help",),
            id="an-unknown-command",
        ),
        pytest.param(
            [str(BIN / "arq"), "workers.settings.WorkerSettings"],
            UNUSED_REDIS,
            "mpc-import-bridge worker: BRIDGE_SECRET_KEY:",
            ("required", "Fernet key"),
            id="arq-entry-point-without-secret-key",
        ),
        pytest.param(
            [str(BIN / "arq"), "workers.settings.WorkerSettings"],
            UNUSED_REDIS | {"BRIDGE_SECRET_KEY": SECRET_KEY, "BRIDGE_WORKER_MAX_JOBS": "-1"},
            "mpc-import-bridge worker: BRIDGE_WORKER_MAX_JOBS:",
            (),
            id="arq-entry-point-with-a-wrong-number",
        ),
    ],
)
def test_a_configuration_error_is_one_line_and_exit_code_2(
    argv: list[str], env: dict[str, str], prefix: str, words: tuple[str, ...]
) -> None:
    assert_one_line(run(argv, env), prefix, *words)


def test_a_secret_in_a_wrong_value_is_not_repeated() -> None:
    result = run(bridge("worker"), UNUSED_REDIS | {"BRIDGE_SECRET_KEY": "hunter2-is-no-fernet-key"})
    assert_one_line(result, "mpc-import-bridge worker: BRIDGE_SECRET_KEY:", "Fernet key")
    assert "hunter2" not in result.stderr


ARQ_WORKER = [str(BIN / "arq"), "workers.settings.WorkerSettings"]


@pytest.mark.parametrize(
    ("argv", "content", "words"),
    [
        pytest.param(bridge("worker"), None, ("cannot read", "No such file"), id="worker-missing-file"),
        pytest.param(ARQ_WORKER, None, ("cannot read", "No such file"), id="arq-entry-point-missing-file"),
        pytest.param(
            bridge("worker"),
            b"not a certificate\n",
            ("not a PEM bundle of CA certificates",),
            id="worker-not-pem",
        ),
    ],
)
def test_a_webhook_ca_bundle_that_does_not_load_stops_the_worker_at_start(
    tmp_path: Path, argv: list[str], content: bytes | None, words: tuple[str, ...]
) -> None:
    bundle = tmp_path / "webhook-ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    env = UNUSED_REDIS | {"BRIDGE_SECRET_KEY": SECRET_KEY, "BRIDGE_WEBHOOK_CA_BUNDLE": str(bundle)}
    result = run(argv, env)
    assert_one_line(result, "mpc-import-bridge worker: BRIDGE_WEBHOOK_CA_BUNDLE:", str(bundle), *words)
