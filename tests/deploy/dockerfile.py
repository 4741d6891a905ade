"""Just enough of a Dockerfile reader for the tests: instructions per stage, in order."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str

    def exec_form(self) -> list[str]:
        parsed: list[str] = json.loads(self.text)
        return parsed

    def flags_and_args(self) -> tuple[dict[str, str], list[str]]:
        """``--from=build src dst`` → ({"from": "build"}, ["src", "dst"])."""
        flags: dict[str, str] = {}
        args: list[str] = []
        for word in shlex.split(self.text):
            if word.startswith("--") and not args:
                name, _, value = word[2:].partition("=")
                flags[name] = value
            else:
                args.append(word)
        return flags, args


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with backslash continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, text = line.partition(" ")
        keyword = keyword.upper()
        text = text.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.IGNORECASE)
            assert match, line
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            stages.append(Stage(base=base, name=match.group(2)))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before FROM: {line}"
            name, _, default = text.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, text))
    return args, stages


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """``ENV A=1 B=two`` → {"A": "1", "B": "two"} (the only ENV form this project uses)."""
    pairs = {}
    for word in shlex.split(instruction.text):
        name, sep, value = word.partition("=")
        assert sep, f"use ENV KEY=VALUE: {instruction.text}"
        pairs[name] = value
    return pairs
