"""deploy/kubernetes: every overlay builds (kustomize, from the kubectl wheel) and every object
validates offline against Kubernetes' schemas (kubernetes-validate, strict) for the oldest and the
newest version we support; KEDA's ScaledObject against our own schema of the fields we use. Then the
promises the manifests make to each other: names, selectors, probes, grace periods, variables.
The optional components are built into each overlay the way its comment tells an operator to
(uncommented in a copy of the tree) and go through the same checks.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bridge.config import WORKER_EXIT_MARGIN_S, describe_settings, load_settings
from bridge.healthcheck import ROLES, role_of
from tests.deploy.dockerfile import parse
from tests.deploy.processes import container_command, slack_socket_stop_s

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBECTL = Path(sys.executable).parent / "kubectl"
OVERLAYS: Final = (
    "base",
    "overlays/production",
    "overlays/without-keda",
    "overlays/production+slack-socket",
    "overlays/without-keda+slack-socket",
)
"""What the tests build; ``overlay+component``: the overlay with its commented opt-in for the
component (``# components:`` and ``#   - ../../components/<component>``) uncommented."""
SLACK_SOCKET_PROBE: Final = ["bridge", "healthcheck", "--role", "slack-socket"]
KUBERNETES_VERSIONS: Final = ("1.28.0", "1.37.0")
"""1.28: the oldest still common in managed clusters; 1.37: the newest kubernetes-validate knows."""
API_PRESTOP_S: Final = 5
TMP: Final = "/tmp"  # noqa: S108 - the containers' scratch mount, checked, not used
VARIABLES: Final = {variable for variable, _, _ in describe_settings()}
SECRET_EXAMPLE: Final[dict[str, Any]] = yaml.safe_load(
    (KUBERNETES / "base" / "secret.example.yaml").read_text()
)

# Our own schema of the ScaledObject fields used here (keda.sh/docs "Scaling Deployments",
# "CPU" and "Prometheus" scalers); strict, so a misspelt field fails.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
SCALED_OBJECT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"behavior": {"type": "object"}, "name": {"type": "string"}},
                        }
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"enum": ["cpu", "prometheus"]},
                            "metricType": {"enum": ["Utilization", "AverageValue", "Value"]},
                            "metadata": _STRING_MAP,
                            "name": {"type": "string"},
                        },
                        "allOf": [
                            {
                                "if": {"properties": {"type": {"const": "prometheus"}}},
                                "then": {
                                    "properties": {
                                        "metadata": {
                                            "required": ["serverAddress", "query", "threshold"],
                                            "propertyNames": {
                                                "enum": [
                                                    "serverAddress",
                                                    "query",
                                                    "threshold",
                                                    "activationThreshold",
                                                    "ignoreNullValues",
                                                    "namespace",
                                                ]
                                            },
                                        }
                                    }
                                },
                            },
                            {
                                "if": {"properties": {"type": {"const": "cpu"}}},
                                "then": {
                                    "required": ["metricType"],
                                    "properties": {
                                        "metadata": {
                                            "required": ["value"],
                                            "propertyNames": {"enum": ["value"]},
                                        }
                                    },
                                },
                            },
                        ],
                    },
                },
            },
        },
    },
}


def build(target: str) -> list[dict[str, Any]]:
    overlay, _, component = target.partition("+")
    if not component:
        return kustomize(KUBERNETES / overlay)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "kubernetes"
        shutil.copytree(KUBERNETES, tree)
        kustomization = tree / overlay / "kustomization.yaml"
        text = kustomization.read_text()
        opt_in = f"# components:\n#   - ../../components/{component}\n"
        assert opt_in in text, f"{overlay}/kustomization.yaml does not offer {component}"
        kustomization.write_text(text.replace(opt_in, "".join(line[2:] for line in opt_in.splitlines(True))))
        return kustomize(tree / overlay)


def kustomize(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return build(request.param)


def of_kind(objects: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] == kind)


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def has_slack_socket(objects: list[dict[str, Any]]) -> bool:
    names = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
    return "mpc-import-bridge-slack-socket" in names


def deployment(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return named(objects, "Deployment", f"mpc-import-bridge-{component}")


def container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment(objects, component)["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly(objects: list[dict[str, Any]], version: str) -> None:
    for obj in [*objects, SECRET_EXAMPLE]:
        if obj["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_overlays_differ_only_in_how_workers_scale() -> None:
    production, without_keda = build("overlays/production"), build("overlays/without-keda")
    assert [o["metadata"]["name"] for o in of_kind(production, "ScaledObject")] == [
        "mpc-import-bridge-worker"
    ]
    assert not list(of_kind(without_keda, "ScaledObject"))
    named(without_keda, "HorizontalPodAutoscaler", "mpc-import-bridge-worker")
    for objects in (production, without_keda):
        images = {
            c["image"]
            for d in of_kind(objects, "Deployment")
            for c in d["spec"]["template"]["spec"]["containers"]
        }
        assert images == {"registry.example.com/mpc-import-bridge:0.1.0"}
        assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
            "mpc-import-bridge"
        }


def test_selectors_services_and_scalers_point_at_what_exists(objects: list[dict[str, Any]]) -> None:
    for dep in of_kind(objects, "Deployment"):
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    api_labels = deployment(objects, "api")["spec"]["template"]["metadata"]["labels"]
    service = named(objects, "Service", "mpc-import-bridge-api")
    assert service["spec"]["selector"].items() <= api_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {
        p["name"] for p in container(objects, "api")["ports"]
    }
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        component = pdb["metadata"]["name"].rsplit("-", 1)[1]
        labels = deployment(objects, component)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    deployments = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for scaled in of_kind(objects, "ScaledObject"):
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments


def test_probes_use_the_health_routes_and_the_worker_check(objects: list[dict[str, Any]]) -> None:
    api = container(objects, "api")
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    worker = container(objects, "worker")
    assert worker["livenessProbe"]["exec"]["command"] == ["bridge", "worker", "--check"]
    assert worker["args"] == ["worker"] and api["args"][0] == "api"
    if has_slack_socket(objects):
        socket = container(objects, "slack-socket")
        assert socket["args"] == ["slack-socket"]
        for probe in ("startupProbe", "livenessProbe"):
            assert socket[probe]["exec"]["command"] == SLACK_SOCKET_PROBE
        # The role the probe names is the one the container runs (as `bridge healthcheck` would read it).
        assert role_of(container_command(socket["args"]))[0] == SLACK_SOCKET_PROBE[-1]
        assert SLACK_SOCKET_PROBE[-1] in ROLES


def test_grace_periods_outlast_the_drains(objects: list[dict[str, Any]]) -> None:
    config = named(objects, "ConfigMap", "mpc-import-bridge")["data"]
    settings = load_settings(config)
    worker_grace = deployment(objects, "worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert worker_grace > settings.worker_drain_s + WORKER_EXIT_MARGIN_S
    api_spec = deployment(objects, "api")["spec"]["template"]["spec"]
    assert container(objects, "api")["lifecycle"]["preStop"]["exec"]["command"] == [
        "sleep",
        str(API_PRESTOP_S),
    ]
    assert api_spec["terminationGracePeriodSeconds"] > API_PRESTOP_S + settings.api_drain_s
    if has_slack_socket(objects):
        socket_spec = deployment(objects, "slack-socket")["spec"]["template"]["spec"]
        assert socket_spec["terminationGracePeriodSeconds"] > slack_socket_stop_s()


def test_configuration_names_only_real_variables_and_secrets_stay_in_the_secret(
    objects: list[dict[str, Any]],
) -> None:
    config = named(objects, "ConfigMap", "mpc-import-bridge")["data"]
    assert not list(of_kind(objects, "Secret")), "applying a Secret from git would overwrite the real one"
    secret = SECRET_EXAMPLE["stringData"]
    assert set(config) <= VARIABLES and set(secret) <= VARIABLES
    assert {"BRIDGE_REDIS_URL", "BRIDGE_API_KEYS", "BRIDGE_SECRET_KEY", "BRIDGE_MPC_TOKEN"} <= set(secret)
    assert not set(config) & set(secret)
    assert all(value == "" for value in secret.values()), "the example Secret holds placeholders only"
    for component in ("api", "worker", *(["slack-socket"] if has_slack_socket(objects) else [])):
        refs = container(objects, component)["envFrom"]
        assert {"configMapRef": {"name": "mpc-import-bridge"}} in refs
        assert {"secretRef": {"name": "mpc-import-bridge"}} in refs


def test_pods_run_as_the_images_user_read_only_with_cpu_requests(objects: list[dict[str, Any]]) -> None:
    user = parse(ROOT / "Dockerfile")[1][-1].last("USER")
    assert user is not None
    uid = int(user.text.split(":")[0])
    for dep in of_kind(objects, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == uid
        assert pod["automountServiceAccountToken"] is False
        scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for spec in pod["containers"]:
            assert spec["securityContext"]["readOnlyRootFilesystem"]
            assert spec["securityContext"]["allowPrivilegeEscalation"] is False
            assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
            assert mounts.get(TMP) in scratch, "a read-only root needs a writable /tmp"
            assert spec["resources"]["requests"]["cpu"], "CPU autoscaling needs a request"


@pytest.mark.parametrize("overlay", ["overlays/production", "overlays/without-keda"])
def test_the_slack_socket_component_adds_one_deployment_of_one_pod(overlay: str) -> None:
    without, with_socket = build(overlay), build(f"{overlay}+slack-socket")
    assert not has_slack_socket(without)

    def ids(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in objects}

    assert ids(with_socket) - ids(without) == {("Deployment", "mpc-import-bridge-slack-socket")}
    assert ids(without) <= ids(with_socket)
    socket = deployment(with_socket, "slack-socket")
    # The overlay's namespace and image reach the component's Deployment; it is labelled like the rest.
    assert socket["metadata"]["namespace"] == "mpc-import-bridge"
    assert container(with_socket, "slack-socket")["image"] == container(with_socket, "worker")["image"]
    assert socket["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mpc-import-bridge"
    assert socket["spec"]["replicas"] == 1


def test_the_validators_catch_a_misspelt_field() -> None:
    objects = build("overlays/production")
    broken = copy.deepcopy(deployment(objects, "worker"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    scaled = copy.deepcopy(named(objects, "ScaledObject", "mpc-import-bridge-worker"))
    scaled["spec"]["triggers"][1]["metadata"]["treshold"] = scaled["spec"]["triggers"][1]["metadata"].pop(
        "threshold"
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
