"""``make demo``: a simulated import watched end to end on this machine, shown live.

Starts Redis (the first ``redis-server`` >= 7 of ``$REDIS_SERVER`` and ``PATH``, else the
Redis-compatible server the project installs into ``.venv``; see :mod:`bridge_tools.redis_binary`)
on a free loopback port, the MPC simulator playing its demo import, a local Slack stand-in, the
API and a worker; creates a watch through the API and prints every event as it arrives and the Slack
import card each time it changes, then the final state of every bulk.
Everything it started is stopped by PID when the import completes or on Ctrl-C.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

import click
import httpx

from bridge_tools.demo_webhooks import ALLOW_LOOPBACK, DemoWebhooks
from bridge_tools.processes import (
    LOOPBACK,
    Process,
    free_port,
    redis_answers,
    wait_until,
)
from bridge_tools.redis_binary import NO_SERVER_EXIT, FoundServer, RedisServerUnavailable, redis_server_found
from bridge_tools.slack_demo import SlackCardPrinter

DEMO_POLL_MIN_S: Final = 0.5
DEMO_POLL_MAX_S: Final = 2.0
FOLLOW_INTERVAL_S: Final = 0.3
DEMO_TIMEOUT_S: Final = 300.0
START_TIMEOUT_S: Final = 60.0
SLACK_CHANNEL: Final = "C0DEMO0001"
SLACK_SETTLE_S: Final = 20.0
"""After the import completed, how long to wait for the card's last update (Slack is paced)."""

ARROW: Final = "→"


class Terminal:
    """Colours when stdout is a terminal, plain text otherwise."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.color = stream.isatty() and os.environ.get("NO_COLOR") is None

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _bridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", *args]


def _read_banner(
    proc: subprocess.Popen[bytes], prefixes: tuple[str, ...], timeout_s: float
) -> dict[str, str]:
    """Lines starting with ``prefixes`` that a child prints on stdout when it is ready."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while len(found) < len(prefixes) and time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        for prefix in prefixes:
            if line.startswith(prefix):
                found[prefix] = line[len(prefix) :].strip()
    if len(found) < len(prefixes):
        raise RuntimeError(f"the simulator did not start (got {found})")
    return found


def _describe(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    kind = event.get("type", "?")
    bulk = f"bulk {data['bulk_id']}" if data.get("bulk_id") is not None else "import"
    parts = [f"{kind:<26}", f"{bulk:<10}"]
    status, previous = data.get("status"), data.get("previous_status")
    if status and previous and previous != status:
        parts.append(f"{previous} {ARROW} {status}")
    elif status:
        parts.append(str(status))
    if data.get("outcome"):
        parts.append(f"({data['outcome']})")
    if kind == "bulk.retrying":
        parts.append(f"retry {data.get('retries')}/{data.get('max_retries', 5)}")
    bulk_fields = data.get("bulk") or {}
    if kind == "bulk.finished":
        parts.append(
            f"{bulk_fields.get('members_created_number', 0)} created, "
            f"{bulk_fields.get('members_updated_number', 0)} updated, "
            f"{bulk_fields.get('members_with_validation_errors_number', 0)} invalid"
        )
    for group in data.get("errors_summary") or []:
        examples = ", ".join(group.get("examples", []))
        parts.append(f"\n{'':>36}{group['count']} x {group['property']}/{group['error']} ({examples})")
    if kind == "import.completed":
        totals = data.get("totals") or {}
        outcomes = ", ".join(f"{n} {k}" for k, n in (data.get("bulks_by_outcome") or {}).items())
        parts.append(
            f"{data.get('bulk_count')} bulks: {outcomes} · "
            f"{totals.get('members_created_number', 0)} created, "
            f"{totals.get('members_updated_number', 0)} updated, "
            f"{totals.get('members_with_validation_errors_number', 0)} invalid"
        )
    if data.get("reason"):
        parts.append(str(data["reason"]))
    return "  ".join(parts)


class Demo:
    def __init__(self, workdir: Path, term: Terminal, time_scale: float, redis: FoundServer) -> None:
        self.workdir = workdir
        self.redis = redis
        self.term = term
        self.time_scale = time_scale
        self.procs: list[Process] = []
        self.api_key = "demo_" + secrets.token_urlsafe(32)
        self.mpc_token = "mpc_demo_" + secrets.token_urlsafe(16)
        self.webhooks = DemoWebhooks(self.procs, workdir, term.line)
        self.started = time.monotonic()
        self.events_shown = 0
        self.slack = SlackCardPrinter(workdir, SLACK_CHANNEL, term.line, lambda text: term.paint(text, "2"))

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        proc = Process(argv, self.workdir / f"{name}.log", env=env).start()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def run(self) -> int:
        term = self.term
        redis_port = free_port()
        self.start(
            "redis",
            [
                self.redis.path,
                "--port",
                str(redis_port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
        )
        wait_until(lambda: redis_answers(redis_port), START_TIMEOUT_S, "redis-server")
        simulator, slug, import_id = self._start_simulator()
        receiver = self.webhooks.start_receiver(START_TIMEOUT_S)
        env = self._bridge_env(redis_port, simulator) | ALLOW_LOOPBACK
        env.update(self.slack.start(self.procs, START_TIMEOUT_S))
        api_port = free_port()
        api_url = f"http://{LOOPBACK}:{api_port}"
        self.start("api", _bridge("api", "--host", LOOPBACK, "--port", str(api_port)), env)
        self.start("worker", _bridge("worker"), env)
        wait_until(lambda: _ready(api_url), START_TIMEOUT_S, "the API to be ready")
        term.line(term.paint("mpc-import-bridge demo", "1"))
        term.line(f"  Redis      {LOOPBACK}:{redis_port}  ({self.redis.describe()})")
        term.line(f"  simulator  {simulator}  (club {slug}, import {import_id})")
        term.line(f"  API        {api_url}  (OpenAPI UI: {api_url}/schema)")
        term.line(f"  webhooks   {receiver}  (a local receiver checking every signature)")
        term.line(f"  Slack      {self.slack.url}  (a local stand-in; the card is printed as it changes)")
        term.line(f"  logs       {self.workdir}")
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {self.api_key}"}) as api:
            term.line("")
            self.webhooks.subscribe(api)
            self._slack_app(api, api_url, env, slug, import_id)
            created = api.post(
                "/v1/watches",
                json={"loyalty_club_slug": slug, "import_id": import_id, "slack": {"channel": SLACK_CHANNEL}},
            )
            created.raise_for_status()
            watch_id = created.json()["id"]
            term.line(f"POST /v1/watches {ARROW} {created.status_code}, watch {watch_id}.")
            term.line(
                term.paint(
                    f"  (the same import live from another terminal: bridge watch follow {watch_id}"
                    f" --api-url {api_url} --api-key {self.api_key})",
                    "2",
                )
            )
            term.line("Events as they happen:\n")
            completed = self._follow(api, watch_id)
            self.webhooks.settle(self.events_shown, self._stamp, term.paint)
            self.slack.settle(SLACK_SETTLE_S)
            self._print_final(api, watch_id)
            self.webhooks.print_summary()
            term.line(self.slack.thread_summary())
        return 0 if completed else 1

    def _slack_app(
        self, api: httpx.Client, api_url: str, env: dict[str, str], slug: str, import_id: str
    ) -> None:
        """Open the club to the demo's channel and say how to drive the bridge from Slack."""
        api.put(f"/v1/clubs/{slug}/slack-channels", json={"channel_ids": [SLACK_CHANNEL]}).raise_for_status()
        term = self.term
        term.line(f"In Slack, in channel {SLACK_CHANNEL}, a person would type: /mpc-watch {slug} {import_id}")
        term.line(
            term.paint(
                "  (here, signed as Slack sends it: python -m bridge_tools.slack_command "
                f"--api-url {api_url} --secret {env['BRIDGE_SLACK_SIGNING_SECRET']} "
                f'--channel {SLACK_CHANNEL} "{slug} {import_id}"; the card\'s buttons come with it)',
                "2",
            )
        )

    def _stamp(self) -> str:
        return self.term.paint(f"+{time.monotonic() - self.started:5.1f}s", "2")

    def _start_simulator(self) -> tuple[str, str, str]:
        argv = _bridge(
            "simulator",
            "--port",
            "0",
            "--token",
            self.mpc_token,
            "--demo",
            "--time-scale",
            str(self.time_scale),
        )
        proc = Process(argv, self.workdir / "simulator.log").start(stdout_pipe=True)
        self.procs.append(proc)
        assert proc.popen is not None
        banner = _read_banner(proc.popen, ("READY simulator ", "DEMO IMPORT "), START_TIMEOUT_S)
        slug, import_id = banner["DEMO IMPORT "].split()
        return banner["READY simulator "], slug, import_id

    def _bridge_env(self, redis_port: int, simulator_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            {
                "BRIDGE_REDIS_URL": f"redis://{LOOPBACK}:{redis_port}/0",
                "BRIDGE_API_KEYS": self.api_key,
                "BRIDGE_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "BRIDGE_MPC_BASE_URL": simulator_url,
                "BRIDGE_MPC_TOKEN": self.mpc_token,
                "BRIDGE_SLACK_SIGNING_SECRET": secrets.token_hex(16),
                "BRIDGE_POLL_MIN_INTERVAL_S": str(DEMO_POLL_MIN_S),
                "BRIDGE_POLL_MAX_INTERVAL_S": str(DEMO_POLL_MAX_S),
                "BRIDGE_LOG_FORMAT": "json",
                "NO_PROXY": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _follow(self, api: httpx.Client, watch_id: str) -> bool:
        self.started = started = time.monotonic()
        cursor: str | None = None
        while time.monotonic() - started < DEMO_TIMEOUT_S:
            params = {"cursor": cursor} if cursor else {}
            page = api.get(f"/v1/watches/{watch_id}/events", params=params).json()
            for item in page["items"]:
                self.events_shown += 1
                self.term.line(f"  {self._stamp()}  {_describe(item)}")
                if item["type"] == "import.completed":
                    return True
            arrived = self.webhooks.print_new(self._stamp(), self.term.paint)
            self.slack.show_changes(self.events_shown)
            cursor = page.get("next_cursor") or _advance(cursor, len(page["items"]))
            if not page["items"] and not arrived:
                time.sleep(FOLLOW_INTERVAL_S)
        self.term.line("the import did not complete in time")
        return False

    def _print_final(self, api: httpx.Client, watch_id: str) -> None:
        watch = api.get(f"/v1/watches/{watch_id}").json()
        self.term.line(f"\nGET /v1/watches/{watch_id}: state {watch['state']}")
        for bulk in watch["bulks"]:
            self.term.line(
                f"  Bulk {bulk['bulk_id']} · {bulk['status']} · {bulk['members_created_number']} created, "
                f"{bulk['members_updated_number']} updated, "
                f"{bulk['members_with_validation_errors_number']} invalid"
                f" · retries {bulk['retries']}/{bulk['max_retries']}"
            )


def _advance(cursor: str | None, consumed: int) -> str | None:
    """Without a next page the same cursor is asked again; once items came, ask after them."""
    from bridge.api.schemas import decode_cursor, encode_cursor

    if consumed == 0:
        return cursor
    return encode_cursor((decode_cursor(cursor) or 0) + consumed)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """SIGTERM (``kill``, a closing terminal's session manager) stops the demo like Ctrl-C: every
    process it started is stopped. Only the main thread can set a handler; the old one is
    returned to be put back (``None`` when none was set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def run_demo(
    *, keep_logs: bool = False, time_scale: float = 1.0, out: Callable[[], IO[str]] = lambda: sys.stdout
) -> int:
    try:
        redis = redis_server_found()
    except RedisServerUnavailable as exc:  # one line, before anything is started
        print(f"bridge demo: {exc}", file=sys.stderr, flush=True)
        return NO_SERVER_EXIT
    workdir = Path(tempfile.mkdtemp(prefix="bridge-demo-"))
    term = Terminal(out())
    demo = Demo(workdir, term, time_scale, redis)
    previous = _stop_on_sigterm()
    try:
        code = demo.run()
    except KeyboardInterrupt:
        term.line("\ninterrupted")
        code = 130
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        term.line(f"\ndemo failed: {exc}")
        for proc in demo.procs:
            term.line(f"--- {proc.log_path.name}\n" + "\n".join(proc.output().splitlines()[-15:]))
        code = 1
    finally:
        demo.stop_all()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if keep_logs or code not in (0, 130):
        term.line(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return code


@click.command("demo")
@click.option("--keep-logs", is_flag=True, help="Keep the processes' log files after the demo.")
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Speed of the simulated import.",
)
def demo_command(keep_logs: bool, time_scale: float) -> None:
    """Watch a simulated import end to end: Redis, simulator, API and worker on this machine."""
    sys.exit(run_demo(keep_logs=keep_logs, time_scale=time_scale))
