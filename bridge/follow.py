"""``bridge watch ...``: the API from a terminal, local or remote, and a live view of an import.

Everything goes over HTTP to the API (URL and key from flags or ``BRIDGE_API_URL`` /
``BRIDGE_API_KEY``), so the commands work against any bridge the user can reach.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

DEFAULT_API_URL: Final = "http://127.0.0.1:8080"
REQUEST_TIMEOUT_S: Final = 10.0
FOLLOW_EVERY_S: Final = 1.0
EVENTS_SHOWN: Final = 12
"""The last events kept under the bulk table in ``watch follow``."""

STATUS_STYLE: Final = {
    "waiting": "dim",
    "working": "bold cyan",
    "waiting_for_retry": "yellow",
    "finished": "green",
    "failed": "bold red",
    None: "dim",
}


class ApiProblem(Exception):
    """The API answered with an error (its message) or could not be reached."""


class BridgeClient:
    def __init__(self, url: str, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=REQUEST_TIMEOUT_S)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiProblem(f"cannot reach the API at {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                message = f"{error['code']}: {error['message']}"
                if error.get("details"):
                    message += f" {error['details']}"
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise ApiProblem(f"HTTP {response.status_code} {message}")
        return response.json() if response.content else None

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        params = dict(params or {})
        while True:
            page = self.call("GET", path, params=params)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]


def bulk_line(bulk: dict[str, Any]) -> str:
    """``Bulk 4101 · finished · 10 created, 3 updated, 1 invalid · retries 0/5``."""
    return (
        f"Bulk {bulk['bulk_id']} · {bulk['status'] or 'unknown'} · {bulk['members_created_number']} created, "
        f"{bulk['members_updated_number']} updated, {bulk['members_with_validation_errors_number']} invalid"
        f" · retries {bulk['retries']}/{bulk['max_retries']}"
    )


def event_line(item: dict[str, Any]) -> str:
    data = item.get("data") or {}
    where = f"bulk {data['bulk_id']}" if data.get("bulk_id") is not None else "import"
    status, previous = data.get("status"), data.get("previous_status")
    change = f"{previous} → {status}" if previous and status and previous != status else (status or "")
    extra = f" ({data['outcome']})" if data.get("outcome") else ""
    if data.get("reason"):
        extra += f" {data['reason']}"
    return f"{item['timestamp'][11:19]}  {item['type']:<26} {where:<12} {change}{extra}"


def render(watch: dict[str, Any], events: list[str]) -> Group:
    """The live view: one row per bulk with a progress bar, totals, the latest events."""
    table = Table(
        title=f"{watch['loyalty_club_slug']} · import {watch['import_id']} · {watch['state']}",
        title_justify="left",
        expand=True,
    )
    for column in ("bulk", "status", "progress", "created", "updated", "invalid", "retries"):
        table.add_column(column, justify="right" if column not in ("status", "progress") else "left")
    for bulk in watch["bulks"]:
        payload = bulk["members_in_payload_number"] or 0
        done = (
            bulk["members_created_number"]
            + bulk["members_updated_number"]
            + bulk["members_with_validation_errors_number"]
        )
        finished = bulk["status"] in ("finished", "failed")
        bar = ProgressBar(
            total=max(payload, 1), completed=max(payload, 1) if finished else min(done, payload), width=24
        )
        table.add_row(
            str(bulk["bulk_id"]),
            Text(bulk["status"] or "unknown", style=STATUS_STYLE.get(bulk["status"], "")),
            bar,
            str(bulk["members_created_number"]),
            str(bulk["members_updated_number"]),
            str(bulk["members_with_validation_errors_number"]),
            f"{bulk['retries']}/{bulk['max_retries']}",
        )
    totals = watch["totals"]
    summary = Text(
        f"totals: {totals['members_created_number']} created, {totals['members_updated_number']} updated, "
        f"{totals['members_with_validation_errors_number']} invalid of {totals['members_in_payload_number']}"
    )
    return Group(table, summary, Text("\n".join(events[-EVENTS_SHOWN:]), style="dim"))


def follow(client: BridgeClient, watch_id: str, console: Console, every_s: float = FOLLOW_EVERY_S) -> str:
    """Show the watch live until it is no longer active; returns its final state."""
    seen = 0
    lines: list[str] = []
    watch = client.call("GET", f"/v1/watches/{watch_id}")
    with Live(render(watch, lines), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            for item in client.pages(
                f"/v1/watches/{watch_id}/events", {"cursor": str(seen)} if seen else None
            ):
                seen += 1
                lines.append(event_line(item))
            watch = client.call("GET", f"/v1/watches/{watch_id}")
            live.update(render(watch, lines))
            if watch["state"] != "active":
                return str(watch["state"])
            time.sleep(every_s)
