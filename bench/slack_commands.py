"""Time from a slash command to Slack's acknowledgement: ``POST /slack/events`` against ``/livez``.

    python -m bench.slack_commands [--commands 200] [--keep]

One API process (``bridge api``) on a real redis-server, with a signing secret and one channel
allowed for the club. The client sends ``--commands`` slash commands one after the other, the way
Slack does — form-encoded, signed with the secret (``bridge_tools.slack_standin.signed``), each
``/mpc-watch <club> <new import id>`` creating a watch (the command's longest path: signature,
allow list, credentials, watch creation) — and as many ``GET /livez`` in between, in the same
run, as the baseline of what this process answers at best. It reports p50, p99 and the maximum
of both, in milliseconds, on stdout as JSON. Slack wants the acknowledgement within 3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Final

import httpx

from bench.harness import API_KEY, stack
from bridge_tools.redis_binary import require_redis_server
from bridge_tools.slack_standin import command_body, signed

SIGNING_SECRET: Final = "bench-signing-secret-0123456789ab"  # noqa: S105 - a benchmark's own
CHANNEL: Final = "C0BENCH"
CLUB: Final = "infinity-mall"
WARMUP: Final = 20
SLACK_DEADLINE_MS: Final = 3000.0
NO_MPC_URL: Final = "http://127.0.0.1:9"


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(ordered[-1], 2),
        "count": len(ordered),
    }


def measure(api_url: str, commands: int) -> dict[str, Any]:
    slack: list[float] = []
    livez: list[float] = []
    with httpx.Client(base_url=api_url, timeout=10) as client:
        allowed = client.put(
            f"/v1/clubs/{CLUB}/slack-channels",
            json={"channel_ids": [CHANNEL]},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        allowed.raise_for_status()
        for index in range(WARMUP + commands):
            body = command_body(f"{CLUB} bench-{index:06d}", channel=CHANNEL)
            headers = signed(SIGNING_SECRET, body)
            started = time.perf_counter()
            response = client.post("/slack/events", content=body, headers=headers)
            took = (time.perf_counter() - started) * 1000
            if response.status_code != 200 or "Watching" not in response.json()["text"]:
                raise RuntimeError(f"command {index}: {response.status_code} {response.text[:200]}")
            started = time.perf_counter()
            client.get("/livez").raise_for_status()
            took_livez = (time.perf_counter() - started) * 1000
            if index >= WARMUP:
                slack.append(took)
                livez.append(took_livez)
    events, baseline = _quantiles(slack), _quantiles(livez)
    return {
        "commands": commands,
        "client": "httpx, one request at a time, keep-alive (as Slack sends them)",
        "slack_events": events,
        "livez": baseline,
        "p99_ratio_to_livez": round(events["p99_ms"] / baseline["p99_ms"], 2),
        "within_slack_deadline": events["max_ms"] < SLACK_DEADLINE_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="Keep the work directory (logs).")
    args = parser.parse_args()
    require_redis_server("bench.slack_commands")
    with stack(keep=args.keep) as running:
        running.start_redis()
        running.start_api(
            running.bridge_env(BRIDGE_MPC_BASE_URL=NO_MPC_URL, BRIDGE_SLACK_SIGNING_SECRET=SIGNING_SECRET)
        )
        print(json.dumps(measure(running.api_url, args.commands), indent=2))


if __name__ == "__main__":
    main()
