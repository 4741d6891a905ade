"""The Dockerfile: lint clean, the shape production needs, and its build steps run for real.

No Docker engine runs here, so the build stage's COPY and RUN instructions are carried out as
written in a temporary build context (into a clean venv, from the repository's files only), and the
commands the image's ENTRYPOINT + CMD select are started from that venv and health-checked with
the image's HEALTHCHECK command. The venv is what the runtime stage copies: it must carry no
installer, and its bytecode must be complete, so that a read-only root filesystem costs nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge_tools.processes import LOOPBACK, Process, free_port, wait_until
from tests.deploy.dockerfile import Stage, env_pairs, parse
from tests.integration.conftest import SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent
OCI_LABELS = ("title", "description", "licenses", "version", "revision", "created")
LEFT_OUT = ("pip", "setuptools", "wheel", "polyfactory", "faker")
"""Distributions the runtime venv does not carry: installers, and what only OpenAPI examples need."""
UNCHECKED_HASH_PYC = 0b01
"""Flags word of a hash-based .pyc whose source is never checked (PEP 552)."""


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE)[1]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_a_slim_python_of_at_least_3_11(stages: list[Stage]) -> None:
    assert len(stages) == 2
    for stage in stages:
        match = re.fullmatch(r"python:3\.(\d+)(?:\.\d+)?-slim(?:-\w+)?(?:@sha256:[0-9a-f]{64})?", stage.base)
        assert match and int(match.group(1)) >= 11, stage.base


def test_dependencies_are_installed_before_the_source_is_copied(stages: list[Stage]) -> None:
    build = stages[0]
    order = [(i.keyword, i.text) for i in build.instructions if i.keyword in ("COPY", "RUN")]
    first_source = next(n for n, (k, t) in enumerate(order) if k == "COPY" and "bridge" in t)
    deps = next(n for n, (k, t) in enumerate(order) if k == "RUN" and "requirements.lock" in t)
    assert deps < first_source


def test_the_runtime_stage_runs_as_a_numeric_non_root_user_under_tini(stages: list[Stage]) -> None:
    runtime = stages[-1]
    user = runtime.last("USER")
    assert user is not None and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user.text), user
    entrypoint, cmd = runtime.last("ENTRYPOINT"), runtime.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.exec_form() == ["tini", "--", "bridge"]
    assert cmd.exec_form()[0] == "api"
    healthcheck = runtime.last("HEALTHCHECK")
    assert healthcheck is not None and healthcheck.text.endswith('CMD ["bridge", "healthcheck"]')
    labels = " ".join(i.text for i in runtime.all("LABEL"))
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels


def test_the_runtime_stage_leaves_no_apt_lists_or_caches_behind(stages: list[Stage]) -> None:
    # Whatever the base's apt configuration: the official Debian images clean up by themselves,
    # a plain Debian base keeps ~80 MB of package caches in the layer.
    runtime = stages[-1]
    installs = [i.text for i in runtime.all("RUN") if "apt-get install" in i.text]
    assert installs, "the runtime stage installs tini with apt"
    for text in installs:
        assert "apt-get update" in text and "--no-install-recommends" in text
        for cleanup in ("apt-get clean", "rm -rf /var/lib/apt/lists/* /var/cache/apt/*"):
            assert cleanup in text, f"{cleanup!r} missing in RUN {text}"


def test_the_runtime_stage_never_writes_bytecode(stages: list[Stage]) -> None:
    env: dict[str, str] = {}
    for instruction in stages[-1].all("ENV"):
        env.update(env_pairs(instruction))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"


def test_the_build_context_holds_every_file_the_dockerfile_copies(stages: list[Stage]) -> None:
    allowed = {
        line.strip()[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for stage in stages:
        for copy in stage.all("COPY"):
            flags, args = copy.flags_and_args()
            if "from" in flags:
                continue
            for source in args[:-1]:
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
                assert (ROOT / source).exists(), source


@pytest.fixture(scope="module")
def built(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage, carried out: returns the venv it installed."""
    context = tmp_path_factory.mktemp("image-build")
    venv = context / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "PIP_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{Path(sys.executable).resolve().parent}:/usr/bin:/bin"  # python3 as in the image
    for instruction in stages[0].instructions:
        if instruction.keyword == "ENV":
            values = env_pairs(instruction)
            values.pop("PIP_NO_CACHE_DIR", None)  # the pip cache only speeds this up
            env.update(values)
            env["VENV"] = str(venv)
        elif instruction.keyword == "COPY":
            _, args = instruction.flags_and_args()
            *sources, target = args
            for source in sources:
                origin = ROOT / source
                destination = context / target if not target.endswith("/") else context / target / source
                if target in ("./", "."):
                    destination = context / origin.name
                if origin.is_dir():
                    shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(origin, destination)
        elif instruction.keyword == "RUN":
            result = subprocess.run(
                ["/bin/sh", "-c", instruction.text],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"RUN {instruction.text}\n{result.stdout}\n{result.stderr}"
        else:
            assert instruction.keyword in ("WORKDIR",), f"the test cannot carry out {instruction.keyword}"
    return venv


def _distributions(venv: Path) -> set[str]:
    site = next((venv / "lib").glob("python3*/site-packages"))
    return {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}


def test_the_built_venv_carries_no_installer_and_no_example_factories(built: Path) -> None:
    present = _distributions(built)
    assert {"litestar", "mpc_import_bridge", "uvicorn"} <= present
    assert present.isdisjoint(LEFT_OUT), present & set(LEFT_OUT)
    assert not list((built / "bin").glob("pip*"))


def test_every_module_of_the_built_venv_has_bytecode_that_needs_no_source_check(built: Path) -> None:
    sources = list((built / "lib").rglob("*.py"))
    assert len(sources) > 1000
    tag = sys.implementation.cache_tag
    missing, checked = [], []
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        if not compiled.exists():
            missing.append(source)
            continue
        with compiled.open("rb") as pyc:
            flags = int.from_bytes(pyc.read(8)[4:8], "little")
        if flags != UNCHECKED_HASH_PYC:
            checked.append(compiled)
    assert missing == [] and checked == [], (missing[:5], checked[:5])


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def started() -> Iterator[list[Process]]:
    processes: list[Process] = []
    try:
        yield processes
    finally:
        for proc in processes:
            proc.stop()


@pytest.mark.slow
def test_the_built_venv_runs_the_three_commands_and_they_pass_the_healthcheck(
    built: Path, stages: list[Stage], redis_url: str, tmp_path: Path, started: list[Process]
) -> None:
    bridge = str(built / "bin" / "bridge")
    cmd = stages[-1].last("CMD")
    assert cmd is not None
    api_args = cmd.exec_form()
    # The image listens on every interface; here only on loopback, on free ports.
    api_port, sim_port = free_port(), free_port()
    api_args[api_args.index("--host") + 1] = LOOPBACK
    api_args[api_args.index("--port") + 1] = str(api_port)
    env = {
        "PATH": f"{built / 'bin'}:/usr/bin:/bin",
        "BRIDGE_REDIS_URL": redis_url,
        "BRIDGE_API_KEYS": "image-test-key-0123456789abcdefghijkl",
        "BRIDGE_MPC_BASE_URL": f"http://{LOOPBACK}:{sim_port}",
        "BRIDGE_MPC_TOKEN": "image-test-token",
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "BRIDGE_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    commands = {
        "api": [bridge, *api_args],
        "worker": [bridge, "worker"],
        "simulator": [bridge, "simulator", "--host", LOOPBACK, "--port", str(sim_port)],
    }
    ports = {"api": api_port, "worker": 0, "simulator": sim_port}
    before = _tree(built)
    for role, argv in commands.items():
        started.append(Process(argv, tmp_path / f"{role}.log", env).start())

    def healthy(role: str) -> bool:
        check = [bridge, "healthcheck", "--role", role, "--port", str(ports[role])]
        return subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0

    for role in commands:
        wait_until(lambda r=role: healthy(r), 30, f"the image's {role} to be healthy")  # type: ignore[misc]
    for proc in started:
        assert proc.alive(), proc.output()[-2000:]
    # Without polyfactory and faker the API still builds its OpenAPI document and serves it all.
    with httpx.Client(base_url=f"http://{LOOPBACK}:{api_port}", timeout=10) as http:
        document = http.get("/schema/openapi.json")
        assert document.status_code == 200 and "/v1/watches" in document.json()["paths"]
        assert http.get("/schema").status_code == 200
        assert http.get("/metrics").status_code == 200
        headers = {"Authorization": "Bearer image-test-key-0123456789abcdefghijkl"}
        created = http.post("/v1/watches", headers=headers, json={"loyalty_club_slug": "c", "import_id": "i"})
        assert created.status_code == 201, created.text
    # Nothing was written into the venv (PYTHONDONTWRITEBYTECODE is unset here, so a module without
    # usable bytecode would have been compiled and written): read-only costs nothing.
    assert _tree(built) == before
    # The installed wheel carries the Lua scripts and the `workers` package arq loads.
    check = subprocess.run(
        [str(built / "bin" / "python"), "-c", "import workers.settings"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([str(BIN / "hadolint"), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3008" in result.stdout
