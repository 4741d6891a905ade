"""``make bench``: every benchmark scenario, a table on stdout, ``bench/results/latest.json``.

    python -m bench [--quick] [--only throughput,latency,...] [--keep]

Each scenario starts its own Redis, simulator and bridge processes on loopback and stops them.
Figures are for this machine; ratios are against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from bench import api, console, delivery, economy, latency, quiet, scale, throughput
from bench.harness import stack
from bench.plot import latency_png
from bridge_tools.redis_binary import require_redis_server

RESULTS: Final = Path(__file__).parent / "results"


def _throughput(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: throughput.run(
        s, bulks=2000 if quick else 5000, seconds=5 if quick else 15, worker_counts=(1,)
    )


def _horizontal(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: throughput.run(
        s, bulks=2000 if quick else 5000, seconds=5 if quick else 15, worker_counts=(1, 2, 4)
    )


def _latency(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: latency.run(
        s, bulks=500 if quick else 2000, rate=10 if quick else 20, seconds=15 if quick else 60
    )


def _economy(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: economy.run(
        s, imports=40 if quick else 200, bulks=5, seeds=economy.SEEDS[:1] if quick else economy.SEEDS
    )


def _scale(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    if quick:
        return lambda s: scale.run(s, bulks=10_000, observe_s=60, floor_s=10, ceiling_s=20)
    return lambda s: scale.run(s, bulks=100_000, observe_s=330)


def _scale_imports(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    if quick:
        return lambda s: scale.run(s, bulks=10_000, bulks_per_watch=5, observe_s=60, floor_s=10, ceiling_s=20)
    return lambda s: scale.run(s, bulks=100_000, bulks_per_watch=5, observe_s=330)


def _api(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: api.run(s, seconds=5 if quick else 15)


def _delivery(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: delivery.run(
        s, imports=20 if quick else 100, bulks=50, subscriptions=2, baseline_s=3 if quick else 10
    )


def _idle(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: quiet.run(s, imports=0, bulks=0, seconds=20 if quick else 60)


def _quiet(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: quiet.run(s, imports=40, bulks=5, seconds=30 if quick else 60)


def _console(quick: bool) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return lambda s: console.run(s, flips=50, streams=50, seconds=5 if quick else 15)


SCENARIOS: Final = {
    "throughput": _throughput,
    "latency": _latency,
    "economy": _economy,
    "scale": _scale,
    "scale-imports": _scale_imports,
    "horizontal": _horizontal,
    "api": _api,
    "delivery": _delivery,
    "idle": _idle,
    "quiet": _quiet,
    "console": _console,
}


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows)


def _gaps(run: dict[str, Any]) -> str:
    return (
        f"{run['min_request_gap_s']} s, {run['median_busy_request_gap_s']} s, "
        f"{run['p90_busy_request_gap_s']} s ({run['gaps_below_floor']})"
    )


def _console_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    flip, note = result["simulator_flip_to_row"], result["redis_note_to_row"]
    rows = [
        (
            "console",
            f"simulator flip -> row changed in Chromium ({flip['count']} flips)",
            f"p50 {flip['p50_ms']} ms, max {flip['max_ms']} ms",
        ),
        (
            "console",
            f"change note in Redis -> row changed ({note['count']} notes)",
            f"p50 {note['p50_ms']} ms, max {note['max_ms']} ms",
        ),
    ]
    for label, key in (
        ("0 console streams", "api_without_streams"),
        (f"{result['streams']} console streams", "api_with_streams"),
        ("0 console streams again", "api_without_streams_after"),
    ):
        run = result[key]
        rows.append(
            (
                "console",
                f"GET /v1/watches/{{id}} with {label}",
                f"{run['requests_per_s']} req/s, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms",
            )
        )
    rows.append(("console", "req/s with streams / mean without", f"{result['ratio_with_to_without']}x"))
    return rows


def summarize(name: str, result: dict[str, Any]) -> list[tuple[str, str, str]]:
    if name in ("throughput", "horizontal"):
        rows = [
            (
                name,
                f"bare httpx GET loop (c={result['concurrency']})",
                f"{result['baselines']['httpx']['requests_per_s']} req/s",
            ),
            (
                name,
                f"bare aiohttp GET loop (c={result['concurrency']})",
                f"{result['baselines']['aiohttp']['requests_per_s']} req/s",
            ),
        ]
        for run in result["runs"]:
            cpu = ", ".join(f"{k} {v}%" for k, v in run["cpu_percent"].items())
            rows.append(
                (
                    name,
                    f"{run['workers']} worker(s): full poll cycles",
                    f"{run['polls_per_s']} polls/s ({cpu})",
                )
            )
            rows.append(
                (
                    name,
                    f"{run['workers']} worker(s): {run['flipped']} bulks finished meanwhile",
                    f"{run['finished_announced']} announced, {run['duplicate_events']} duplicate events",
                )
            )
        rows.append(
            (
                name,
                "ratio 1 worker / aiohttp, / httpx",
                f"{result['ratio_to_aiohttp']}x, {result['ratio_to_httpx']}x",
            )
        )
        return rows
    if name.startswith("scale"):
        return [
            (
                name,
                f"{result['bulks']} bulks, {result['bulks_per_watch']} per watch, created via the API",
                f"{result['create_seconds']} s ({result['created_per_s']} watches/s)",
            ),
            (
                name,
                "Redis memory per watched bulk: created, polled",
                f"{result['redis_bytes_per_watched_bulk_created']} bytes, "
                f"{result['redis_bytes_per_watched_bulk']} bytes",
            ),
            (name, "worker RSS", f"{result['worker_rss_mb']} MB"),
            (
                name,
                f"poll gaps over {result['observed_s']} s ({result['bulks_polled']} bulks polled)",
                f"min {result['min_gap_s']} s, max {result['max_gap_s']} s; "
                f"{result['gaps_below_floor']} below the {result['floor_s']} s floor, "
                f"{result['gaps_above_ceiling']} above the {result['ceiling_s']} s ceiling",
            ),
        ]
    if name == "economy":
        b, n = result["bridge"], result["naive_5s_poller"]
        return [
            (
                name,
                f"{result['imports']} imports x {result['bulks_per_import']} bulks, "
                f"time x{result['time_scale']}",
                f"{b['completed_bulks']} bulks completed",
            ),
            (
                name,
                "bridge: requests per completed bulk, median delay",
                f"{b['requests_per_completed_bulk']}, {b['median_detection_delay_s']} s",
            ),
            (
                name,
                "naive 5 s poller: requests per completed bulk, median delay",
                f"{n['requests_per_completed_bulk']}, {n['median_detection_delay_s']} s",
            ),
            (
                name,
                f"median delay, bridge - naive ({b['observed_transitions']} and "
                f"{n['observed_transitions']} changes, {len(result['seeds'])} seeds), 95 % interval",
                "{:+} s [{:+}, {:+}]".format(
                    result["median_delay_difference_s"], *result["median_delay_difference_ci95_s"]
                ),
            ),
            (name, "ratio of requests (bridge / naive)", f"{result['request_ratio']}"),
            (
                name,
                "request gap, bridge: min, busy median, busy p90 (below the 5 s floor)",
                _gaps(b),
            ),
            (
                name,
                "request gap, naive: min, busy median, busy p90 (below the 5 s floor)",
                _gaps(n),
            ),
            *(
                (
                    name,
                    f"request gap on the wire (tcpdump), {who}: min (below the 5 s floor)",
                    f"{run['min_wire_request_gap_s']} s "
                    f"({run['wire_gaps_below_floor']} of {run['wire_request_gaps']})",
                )
                for who, run in (("bridge", b), ("naive", n))
                if run["wire_request_gaps"] is not None
            ),
        ]
    if name == "latency":
        t, o = result["total"], result["own_part"]
        return [
            (
                name,
                f"{result['bulks']} bulks, floor {result['poll_floor_s']} s, {result['flips']} flips",
                f"{result['observed_flips']} observed, {result['not_delivered']} not delivered, "
                f"{result.get('returned_to_the_status_last_seen', 0)} back to the status last seen (A→B→A)",
            ),
            (
                name,
                "flip -> webhook received (total)",
                f"p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms, max {t['max_ms']} ms",
            ),
            (
                name,
                "poll that saw it -> webhook (own part)",
                f"p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms, max {o['max_ms']} ms",
            ),
        ]
    if name == "api":
        return _api_rows(result)
    if name in ("idle", "quiet"):
        return _quiet_rows(name, result)
    if name == "delivery":
        return _delivery_rows(result)
    if name == "console":
        return _console_rows(result)
    return [(name, key, str(value)) for key, value in result.items() if not isinstance(value, dict | list)]


def _api_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    c = result["concurrency"]
    rows = []
    for key in ("livez_before", "create", "show", "livez_after"):
        r = result[key]
        ratio = f", {r['ratio_to_livez']}x /livez" if "ratio_to_livez" in r else ""
        failed = r["errors"] + sum(n for s, n in r["statuses"].items() if not s.startswith("2"))
        rows.append(
            (
                "api",
                f"{r['name']} (c={c})",
                f"{r['requests_per_s']} req/s{ratio}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
                + (f", {failed} not 2xx" if failed else ""),
            )
        )
        rows.append(
            (
                "api",
                f"  CPU during {r['name']}",
                f"api {r['api_cpu_percent']}% ({r['api_cpu_ms_per_request']} ms/request), "
                f"redis {r['redis_cpu_percent']}%, client {r['client_cpu_percent']}%; "
                f"{r['redis_commands_per_request']} Redis commands/request",
            )
        )
    return rows


def _quiet_rows(name: str, result: dict[str, Any]) -> list[tuple[str, str, str]]:
    shape = (
        f"{result['imports']} imports x {result['bulks_per_import']} bulks working, "
        if name == "quiet"
        else ""
    )
    rows = []
    for label, title in (
        ("events", "job loop woken by events"),
        ("poll_10ms", "baseline: job loop every 10 ms"),
    ):
        r = result[label]
        cpu = ", ".join(f"{k} {v}%" for k, v in r["cpu_percent"].items())
        rows.append(
            (name, f"{shape}{title}: CPU over {r['seconds']} s", f"{cpu}; bridge {r['bridge_cpu_percent']}%")
        )
        if name == "quiet":
            rows.append(
                (
                    name,
                    f"  {title}: upstream requests, CPU per request, per watched bulk per minute",
                    f"{r['upstream_requests']} ({r['upstream_requests_per_s']}/s), "
                    f"{r.get('cpu_ms_per_upstream_request')} ms, "
                    f"{r.get('cpu_ms_per_watched_bulk_per_min')} ms",
                )
            )
    return rows


def _drained_row(c: int, run: dict[str, Any], scheme: str) -> tuple[str, str, str]:
    cpu = ", ".join(f"{k} {v}%" for k, v in run["cpu_percent"].items())
    return (
        "delivery",
        f"1 worker (max_jobs={c}): webhooks drained over {scheme}",
        f"{run['deliveries_per_s']} deliveries/s ({cpu}); each "
        f"{run['worker_cpu_ms_per_delivery']} ms worker CPU, "
        f"{run['redis_commands_per_delivery']} Redis commands",
    )


def _checks_row(run: dict[str, Any], scheme: str) -> tuple[str, str, str]:
    sig = run["signatures_checked"]
    return (
        "delivery",
        f"{scheme} checks: duplicate ids, missing, left in outbox, signatures",
        f"{sum(run['duplicate_webhook_ids'].values())}, {sum(run['missing_events'].values())}, "
        f"{run['left_in_outbox']}, {sig['verified']} verified / {sig['failed']} failed",
    )


def _delivery_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    c = result["concurrency"]
    keep, new = result["baselines"]["keep_alive"], result["baselines"]["new_connection"]
    return [
        (
            "delivery",
            f"backlog: {result['events']} events x {result['subscriptions']} subscriptions",
            f"{result['deliveries']} deliveries, body {result['body_bytes']['mean']} B mean",
        ),
        _drained_row(c, result, "http"),
        _drained_row(c, result["https"], "https (CA from BRIDGE_WEBHOOK_CA_BUNDLE)"),
        (
            "delivery",
            "  Redis commands per delivery by name (http; scripts count their own commands)",
            ", ".join(f"{name} {n}" for name, n in result["redis_commands_by_name_per_delivery"].items()),
        ),
        (
            "delivery",
            f"bare aiohttp POST loop (c={c}), keep-alive / new connection each",
            f"{keep['requests_per_s']} / {new['requests_per_s']} req/s "
            f"(client {keep['client_cpu_percent']}% / {new['client_cpu_percent']}%, "
            f"receiver {keep['receiver_cpu_percent']}% / {new['receiver_cpu_percent']}%)",
        ),
        (
            "delivery",
            "ratio worker / keep-alive, / new connection",
            f"{result['ratio_to_keep_alive']}x, {result['ratio_to_new_connection']}x",
        ),
        _checks_row(result, "http"),
        _checks_row(result["https"], "https"),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller and shorter (a smoke run)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    require_redis_server("bench")
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "quick": args.quick,
    }
    rows: list[tuple[str, str, str]] = [("scenario", "measure", "figure")]
    for name in args.only.split(","):
        with stack(keep=args.keep) as running:
            started = time.monotonic()
            result = await SCENARIOS[name](args.quick)(running)
            result["wall_s"] = round(time.monotonic() - started, 1)
        results[name] = result
        if name == "latency":
            RESULTS.mkdir(exist_ok=True)
            latency_png(result, RESULTS / "latency.png")
            result.pop("samples_total_s")
            result.pop("samples_own_s")
        rows += summarize(name, result)
        print(table(rows[-len(summarize(name, result)) :]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    print("\n" + table(rows))
    print(f"\nwritten: {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    asyncio.run(main())
