"""docs/configuration.md and deploy/.env.example are generated from the settings: never out of date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import describe_settings
from bridge.config_docs import ENV_EXAMPLE_PATH, MARKDOWN_PATH, render

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate both with: make config-docs"


@pytest.mark.parametrize(("fmt", "path"), [("markdown", MARKDOWN_PATH), ("env", ENV_EXAMPLE_PATH)])
def test_the_committed_file_is_what_the_settings_render(fmt: str, path: str) -> None:
    assert (ROOT / path).read_text() == render(fmt), f"{path} is out of date; {REGENERATE}"  # type: ignore[arg-type]


def test_every_variable_is_documented_in_both() -> None:
    markdown, env = render("markdown"), render("env")
    for variable, _, description in describe_settings():
        assert description, f"{variable} has no description"
        assert f"`{variable}`" in markdown
        assert f"{variable}=" in env


def test_the_cli_prints_the_same() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "bridge", "config-reference", "--format", "env"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == render("env")
