"""Scenario 6, badinput: schemathesis against ``/schema``, then a hand list of hostile requests.

A running API process (its own Redis, no worker: nothing else writes) is fuzzed by schemathesis
from its OpenAPI document — every phase, stateful included, with the checks and exceptions of
``tests/fuzz/schemathesis.toml`` — then every route that takes a body gets each hostile request
of :func:`hostile_bodies`: a 2 MB body, 10,000-deep nesting, invalid UTF-8, NUL bytes, huge
integers, duplicate keys, wrong content types and more, each one invalid as a whole.

Passes when: schemathesis found nothing; no hostile request got a 5xx (nor a 2xx: each is
invalid); the API log shows no unhandled error; ``/readyz`` still answers 200; and Redis holds
exactly what it held before the hand list (no partial write).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Final

import redis

from bridge_tools.processes import Process
from chaos._faultstack import ApiClient, fault_stack, write_log
from chaos.model import Outcome, RunContext, Size

NAME: Final = "badinput"
SEED: Final = 20261127
SCHEMATHESIS_CONFIG: Final = Path(__file__).resolve().parent.parent / "tests" / "fuzz" / "schemathesis.toml"
CASES: Final = {"short": 500, "full": 5000}
"""Cases schemathesis should generate at least."""
BASE_CASES: Final = 650
"""About what schemathesis generates whatever ``--max-examples`` (examples and coverage phases)."""
CASES_PER_EXAMPLE: Final = 13
"""Cases one more ``--max-examples`` adds, at the least (measured on this API's 19 operations: about
19 at 20 examples, 16 at 229; hypothesis drops duplicates, so it falls as examples grow)."""
MIN_EXAMPLES: Final = 5
SCHEMATHESIS_TIMEOUT_S: Final = 900.0
BIG_BODY_BYTES: Final = 2 * 1024 * 1024
DEEP: Final = 10_000
HUGE_DIGITS: Final = 5_000
CLUB: Final = "bad-input-club"
JSON_TYPE: Final = {"Content-Type": "application/json"}


def max_examples(size: Size) -> int:
    wanted = CASES[size.name]
    return max(MIN_EXAMPLES, math.ceil((wanted - BASE_CASES) / CASES_PER_EXAMPLE))


def hostile_bodies() -> dict[str, tuple[bytes, dict[str, str]]]:
    """Name → (body, headers). Every one is invalid whichever way a parser reads it."""
    ok = '"loyalty_club_slug": "ok-club", "import_id": "imp", "url": "https://example.com/h", "token": "t"'
    huge = "9" * HUGE_DIGITS
    nines = f'"bulk_ids": [{huge}], "stall_after_s": -{huge}, "enabled": {huge}, "token": {huge}'
    text = {"Content-Type": "text/plain"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    latin1 = {"Content-Type": "application/json; charset=latin-1"}
    return {
        "2 MB body": (json.dumps({"url": "x" * BIG_BODY_BYTES, "token": "t"}).encode(), JSON_TYPE),
        "10,000-deep arrays": (b"[" * DEEP + b"]" * DEEP, JSON_TYPE),
        "10,000-deep objects": (b'{"a":' * DEEP + b"1" + b"}" * DEEP, JSON_TYPE),
        "invalid UTF-8 in strings": (
            b'{"loyalty_club_slug": "\xff\xfe", "url": "\xc3\x28", "token": "\xed\xa0\x80"}',
            JSON_TYPE,
        ),
        "invalid UTF-8 in a key": (b'{"\xff": 1}', JSON_TYPE),
        "latin-1 declared": (
            '{"token": "é", "url": "é", "loyalty_club_slug": "é"}'.encode("latin-1"),
            latin1,
        ),
        "UTF-16": ('{"token": "x", "url": "x"}'.encode("utf-16"), JSON_TYPE),
        "NUL escaped in strings": (
            b'{"loyalty_club_slug": "a\\u0000b", "import_id": "x\\u0000", "token": "", "url": "https://a\\u0000.com"}',
            JSON_TYPE,
        ),
        "NUL bytes raw": (b'{"token": "a\x00b", "url": "\x00"}', JSON_TYPE),
        "only NUL bytes": (b"\x00" * 64, JSON_TYPE),
        "huge integers": (
            ('{"loyalty_club_slug": "ok-club", "import_id": "imp", ' + nines + "}").encode(),
            JSON_TYPE,
        ),
        "huge floats": (
            b'{"loyalty_club_slug": "ok-club", "stall_after_s": 1e999, "token": 1e999, "url": 1e999}',
            JSON_TYPE,
        ),
        "NaN": (
            b'{"loyalty_club_slug": "ok-club", "import_id": "imp", "stall_after_s": NaN, "token": NaN}',
            JSON_TYPE,
        ),
        "duplicate keys, the last invalid": (
            (
                "{" + ok + ', "loyalty_club_slug": "BAD CLUB!", "url": 5, "token": 5, "enabled": "yes"}'
            ).encode(),
            JSON_TYPE,
        ),
        "duplicate keys, the first invalid": (
            ('{"unknown_field": 1, ' + ok + ', "unknown_field": 2}').encode(),
            JSON_TYPE,
        ),
        "lone surrogates": (
            b'{"token": "\\ud800", "loyalty_club_slug": "\\udfff", "url": "https://\\ud800.com"}',
            JSON_TYPE,
        ),
        "trailing garbage": (b'{"token": "t", "url": "https://example.com"}xyz', JSON_TYPE),
        "empty body": (b"", JSON_TYPE),
        "null": (b"null", JSON_TYPE),
        "a top-level array": (b"[]", JSON_TYPE),
        "a 60 kB key": (json.dumps({"k" * 60_000: 1}).encode(), JSON_TYPE),
        "text/plain": (b'{"loyalty_club_slug": "ok-club", "import_id": "imp", "token": "t"}', text),
        "form-urlencoded": (b"loyalty_club_slug=ok-club&import_id=imp&token=t", form),
        "multipart": (
            b'--x\r\nContent-Disposition: form-data; name="token"\r\n\r\nt\r\n--x--\r\n',
            multipart,
        ),
        "no content type": (b'{"token": "t", "url": "https://example.com"}', {}),
        "XML": (b"<token>t</token>", {"Content-Type": "application/xml"}),
        "a broken content type": (
            b'{"unknown_field": 1}',
            {"Content-Type": "application/json; charset=\x7f"},
        ),
        "gzip announced, not sent": (b'{"unknown_field": 1}', {**JSON_TYPE, "Content-Encoding": "gzip"}),
    }


def redis_state(port: int) -> dict[bytes, Any]:
    """Every key's type and value, in a form that compares equal when the data is the same."""
    client: Any = redis.Redis(host="127.0.0.1", port=port)
    state: dict[bytes, Any] = {}
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            if kind == b"string":
                value: Any = client.get(key)
            elif kind == b"hash":
                value = sorted(client.hgetall(key).items())
            elif kind == b"list":
                value = client.lrange(key, 0, -1)
            elif kind == b"set":
                value = sorted(client.smembers(key))
            elif kind == b"zset":
                value = client.zrange(key, 0, -1, withscores=True)
            else:
                value = kind
            state[key] = (kind, value)
    finally:
        client.close()
    return state


async def run_schemathesis(ctx: RunContext, url: str, workdir: Path, examples: int) -> tuple[int | None, str]:
    # The suite's own configuration, with schemathesis' cache in the work directory (by default
    # it writes beside the configuration file, into the repository).
    config = workdir / "schemathesis.toml"
    cache = f"cache.directory = {json.dumps(str(workdir / 'schemathesis-cache'))}\n"
    config.write_text(cache + SCHEMATHESIS_CONFIG.read_text())
    argv = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{url}/schema/openapi.json",
        "-H",
        f"Authorization: Bearer {ctx.secrets.api_key}",
        "--max-examples",
        str(examples),
        "--seed",
        str(SEED),
        "--no-color",
    ]
    env = {"NO_COLOR": "1", "PATH": str(Path(sys.executable).parent), "HOME": str(workdir)}
    proc = Process(argv, workdir / "schemathesis.log", env, cwd=workdir)
    proc.start()
    try:
        assert proc.popen is not None
        code = await asyncio.to_thread(proc.popen.wait, SCHEMATHESIS_TIMEOUT_S)
    finally:
        proc.stop()
    return code, proc.output()


async def body_routes(api: ApiClient, ids: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every operation whose OpenAPI declares a request body, ids filled in."""
    doc = (await api.request("GET", "/schema/openapi.json")).json()
    routes = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                routes.append((method.upper(), re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)))
    return routes


async def run(ctx: RunContext, size: Size) -> Outcome:
    outcome = Outcome(NAME)
    async with fault_stack(ctx, NAME) as running:
        stack = running.stack
        stack.start_redis()
        stack.simulator_url = "http://127.0.0.1:9"  # no worker here: MPC is never called
        api = running.start_api(running.env(BRIDGE_LOG_LEVEL="warning"))
        await api.put_club_token(CLUB, ctx.secrets.club_token)
        watch = await api.create_watch({"loyalty_club_slug": CLUB, "import_id": "imp-1", "bulk_ids": [1, 2]})
        sid = await api.subscribe("http://127.0.0.1:9/hooks", event_types=["bulk.*"])

        examples = max_examples(size)
        code, output = await run_schemathesis(ctx, stack.api_url, running.workdir, examples)
        generated = re.search(r"(\d+) generated", output)
        cases = int(generated.group(1)) if generated else 0
        stateful = re.search(r"(✅|❌|⏭️?|🚫)\s*Stateful", output)
        links = re.search(
            r"API Links:\s*(\d+) covered / (\d+) selected / \d+ total \((\d+) inferred\)", output
        )
        outcome.figures.update(
            {
                "schemathesis cases": cases,
                "stateful links covered": (
                    f"{links[1]} of {links[2]} ({int(links[2]) - int(links[3])} declared)"
                    if links
                    else "none"
                ),
                "max examples": examples,
                "stateful phase": "ran" if stateful and stateful.group(1) in ("✅", "❌") else "skipped",
            }
        )
        outcome.check(
            f"schemathesis: no failure in >= {CASES[size.name]} cases",
            code == 0 and cases >= CASES[size.name],
            f"exit {code}, {cases} cases" + ("" if code == 0 else " (see schemathesis.log)"),
        )

        routes = await body_routes(api, {"subscription_id": sid, "slug": CLUB, "watch_id": watch["id"]})
        before = redis_state(stack.redis_port)
        bad: list[str] = []
        accepted: list[str] = []
        sent = 0
        for method, path in routes:
            for name, (body, headers) in hostile_bodies().items():
                response = await api.request(method, path, content=body, headers=headers)
                sent += 1
                if response.status_code >= 500:
                    bad.append(f"{method} {path} {name}: {response.status_code}")
                elif response.status_code < 400:
                    accepted.append(f"{method} {path} {name}: {response.status_code}")
        after = redis_state(stack.redis_port)
        changed = sorted(
            k.decode(errors="replace") for k in before.keys() | after.keys() if before.get(k) != after.get(k)
        )
        ready = (await api.request("GET", "/readyz")).status_code
        log = (running.workdir / "api.log").read_text(errors="replace")
        outcome.figures.update({"body routes": len(routes), "hostile requests": sent})
        outcome.check("0 responses >= 500", not bad, "; ".join(bad[:4]))
        outcome.check("every hostile request refused (4xx)", not accepted, "; ".join(accepted[:4]))
        outcome.check("no unhandled error in the API log", "unhandled error" not in log)
        outcome.check("API still ready (/readyz 200)", ready == 200, f"HTTP {ready}")
        outcome.check(
            "data unchanged (no partial write)", not changed, f"changed: {changed[:5]}" if changed else ""
        )
        write_log(running.workdir / "findings.log", [*bad, *accepted, *changed])
    return outcome
