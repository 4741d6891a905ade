"""deploy/compose.yaml: valid against our schema of the Compose keys it uses (no Docker engine or
compose plugin here), and the promises it makes: Redis with AOF on a volume, the API, two workers,
the simulator and the Slack Socket Mode process behind profiles, healthchecks that check what each
service runs, grace periods above the drains, documented variables and profiles.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Final

import jsonschema
import pytest
import yaml

from bridge.config import WORKER_EXIT_MARGIN_S, describe_settings, load_settings
from bridge.config_docs import COMPOSE_VARIABLES
from bridge.healthcheck import ROLES, role_of
from tests.deploy.processes import container_command, slack_socket_stop_s

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
VARIABLES: Final = {variable for variable, _, _ in describe_settings()}

_STRINGS = {"type": "array", "items": {"type": "string"}}
_DURATION = {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"}
SERVICE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string"},
        "build": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"context": {"type": "string"}, "dockerfile": {"type": "string"}},
        },
        "command": _STRINGS,
        "env_file": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "properties": {"path": {"type": "string"}, "required": {"type": "boolean"}},
            },
        },
        "environment": {"type": "object", "additionalProperties": {"type": "string"}},
        "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
        "read_only": {"type": "boolean"},
        "tmpfs": _STRINGS,
        "cap_drop": _STRINGS,
        "security_opt": _STRINGS,
        "ports": _STRINGS,
        "volumes": _STRINGS,
        "profiles": _STRINGS,
        "stop_grace_period": _DURATION,
        "deploy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"replicas": {"type": "integer", "minimum": 0}},
        },
        "depends_on": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"condition": {"enum": ["service_started", "service_healthy"]}},
            },
        },
        "healthcheck": {
            "type": "object",
            "additionalProperties": False,
            "required": ["test"],
            "properties": {
                "test": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "interval": _DURATION,
                "timeout": _DURATION,
                "retries": {"type": "integer", "minimum": 1},
                "start_period": _DURATION,
            },
        },
    },
}
COMPOSE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "patternProperties": {"^x-": {}},
    "properties": {
        "name": {"type": "string"},
        "services": {"type": "object", "additionalProperties": SERVICE_SCHEMA},
        "volumes": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
    },
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def test_the_file_matches_the_schema_of_the_keys_it_uses(compose: dict[str, Any]) -> None:
    jsonschema.validate(compose, COMPOSE_SCHEMA)


def test_redis_keeps_an_append_only_file_on_a_volume_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--maxmemory") + 1] == "${DEPLOY_REDIS_MAXMEMORY:-1gb}"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]


REQUIRED_PASSWORD: Final = "${DEPLOY_REDIS_PASSWORD:?set DEPLOY_REDIS_PASSWORD in deploy/.env}"


def test_redis_needs_a_password_that_compose_refuses_to_run_without(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == REQUIRED_PASSWORD  # `:?`: no default, no start
    assert redis["environment"]["REDISCLI_AUTH"] == REQUIRED_PASSWORD  # the healthcheck, off its argv
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_the_api_two_workers_and_a_simulator_for_trials(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["api"]["command"][0] == "api"
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["simulator"]["command"][0] == "simulator"
    assert services["simulator"]["profiles"] == ["trial"]
    assert services["slack-socket"]["command"] == ["slack-socket"]
    assert services["slack-socket"]["profiles"] == ["slack-socket"]
    assert services["slack-socket"]["deploy"]["replicas"] == 1
    for name in ("api", "worker", "slack-socket"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert (
            services[name]["environment"]["BRIDGE_REDIS_URL"] == f"redis://:{REQUIRED_PASSWORD}@redis:6379/0"
        )
        assert services[name]["build"]["context"] == ".." and (COMPOSE.parent / "../Dockerfile").exists()
    for name, service in services.items():
        assert "healthcheck" in service, name


def test_each_healthcheck_checks_what_its_service_runs(compose: dict[str, Any]) -> None:
    bridges = {name: s for name, s in compose["services"].items() if "build" in s}
    assert set(bridges) == {"api", "worker", "simulator", "slack-socket"}
    for name, service in bridges.items():
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "bridge", "healthcheck"], name
        options = test[3:]
        # An explicit --role, or the one `bridge healthcheck` reads off the container's command line.
        if "--role" in options:
            role = options[options.index("--role") + 1]
        else:
            role = role_of(container_command(service["command"]))[0]
        assert role in ROLES and role == service["command"][0], name


def test_stop_grace_periods_outlast_the_drains(compose: dict[str, Any]) -> None:
    defaults = load_settings({})
    services = compose["services"]
    assert seconds(services["api"]["stop_grace_period"]) > defaults.api_drain_s
    assert seconds(services["worker"]["stop_grace_period"]) > defaults.worker_drain_s + WORKER_EXIT_MARGIN_S
    assert seconds(services["slack-socket"]["stop_grace_period"]) > slack_socket_stop_s()


def test_every_variable_it_reads_is_documented_in_the_env_example() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{(\w+)", text)) | set(re.findall(r"\b(BRIDGE_\w+):", text))
    documented = set(re.findall(r"^#? ?(\w+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert used <= documented, used - documented
    compose_only = {name for name, _, _ in COMPOSE_VARIABLES}
    assert {v for v in used if v.startswith("BRIDGE_")} <= VARIABLES
    assert {v for v in used if not v.startswith("BRIDGE_")} <= compose_only


def test_the_header_says_how_to_start_each_profile_and_what_it_needs(compose: dict[str, Any]) -> None:
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    profiles = {p for service in compose["services"].values() for p in service.get("profiles", [])}
    assert profiles == {"trial", "slack-socket"}
    for profile in profiles:
        assert f"docker compose -f deploy/compose.yaml --profile {profile} up -d --build" in header
    assert "BRIDGE_SLACK_APP_TOKEN" in header and "BRIDGE_SLACK_BOT_TOKEN" in header
    example = ENV_EXAMPLE.read_text()
    assert "`slack-socket` profile" in example
    for variable in ("BRIDGE_SLACK_APP_TOKEN", "BRIDGE_SLACK_BOT_TOKEN", "COMPOSE_PROFILES"):
        assert re.search(rf"^# {variable}=", example, flags=re.MULTILINE), variable


def test_the_schema_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["healtcheck"] = broken["services"]["api"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, COMPOSE_SCHEMA)
