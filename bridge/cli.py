"""The ``bridge`` command: run the API, a worker, the MPC simulator or the demo."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any, Final, NoReturn

import click

from bridge import __version__
from bridge.config import ConfigError, load_settings
from bridge.core.patterns import IMPORT_ID, SLUG, WATCH_ID, matches
from bridge.exits import EXIT_CONFIG, PROGRAM, exit_with_config_error, one_line
from bridge.follow import DEFAULT_API_URL, ApiProblem, BridgeClient, bulk_line, follow


def _fail(message: str) -> NoReturn:
    click.echo(f"{PROGRAM}: {message}", err=True)
    sys.exit(EXIT_CONFIG)


class _UsageLine(click.ClickException):
    """A wrong option or argument, shown like a configuration error: one line, exit 2."""

    exit_code = EXIT_CONFIG

    def __init__(self, error: click.UsageError) -> None:
        path = root = ""
        if error.ctx is not None:
            path, root = error.ctx.command_path, error.ctx.find_root().command_path
        self.command = path[len(root) :].strip() or None
        where = f"bridge {self.command}" if self.command else "bridge"
        super().__init__(f"{error.format_message()} (see `{where} --help`)")

    def show(self, file: Any = None) -> None:
        prefix = f"{PROGRAM} {self.command}" if self.command else PROGRAM
        click.echo(f"{prefix}: {one_line(self.format_message())}", err=True)


PLUGIN_GROUP: Final = "bridge.commands"
"""Entry-point group of the commands that ship beside the product (the MPC simulator, the demo):
the product never imports that tooling; a command is loaded only when it is run."""


class _Commands(click.Group):
    """The product's own commands, plus those of :data:`PLUGIN_GROUP`, loaded on use.

    Every command ends a configuration error the same way: a wrong ``BRIDGE_*`` variable
    (:class:`~bridge.config.ConfigError`, wherever it is raised) or a wrong option is one line on
    stderr naming it and saying what is expected, and exit code 2 — never a traceback or a usage
    screen in a container's log.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _UsageLine(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _UsageLine(exc) from None
        except ConfigError as exc:
            exit_with_config_error(str(exc), ctx.invoked_subcommand)

    def _plugins(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            return None
        try:
            loaded = plugin.load()
        except ImportError:
            _fail(f"`bridge {cmd_name}` is not installed here (it ships with the development tools)")
        if not isinstance(loaded, click.Command):
            raise TypeError(f"entry point {plugin.value} is not a click command")
        return loaded


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mpc-import-bridge")
def main() -> None:
    """mpc-import-bridge: watch Placewise MPC member imports, announce every bulk status change."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
def api(host: str, port: int) -> None:
    """Run the HTTP API (configuration from BRIDGE_* variables)."""
    from bridge.app import create_app
    from bridge.console.routes import end_console_streams
    from bridge.logs import configure_logging
    from bridge.server import serve

    settings = load_settings()
    app = create_app(settings)
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(
        serve(
            app,
            host=host,
            port=port,
            drain_s=settings.api_drain_s,
            on_stop=lambda: end_console_streams(app),
        )
    )


@main.command()
@click.option(
    "--check",
    is_flag=True,
    help="Exit 0 when this host's worker recorded its health lately, 1 otherwise (a liveness probe).",
)
def worker(check: bool) -> None:
    """Run a worker: polls MPC and delivers events (like `arq workers.settings.WorkerSettings`,
    with a prompt, bounded shutdown)."""
    settings = load_settings()
    if check:
        from bridge.healthcheck import check as health_check
        from bridge.healthcheck import report

        report(health_check("worker", settings=settings))
    import uvloop

    from bridge.logs import configure_logging
    from bridge.wiring import worker_options
    from bridge.worker.arq_compat import run

    options = worker_options(settings)
    configure_logging(settings.log_level, settings.log_format)
    uvloop.install()
    sys.exit(run(options))


@main.command("slack-socket")
def slack_socket() -> None:
    """Serve the Slack app's command and buttons over Socket Mode (BRIDGE_SLACK_APP_TOKEN), for
    installations Slack cannot reach over HTTP."""
    from bridge.slack_socket import main as run_socket
    from bridge.store.layout import LayoutError

    try:
        run_socket(load_settings())
    except LayoutError as exc:
        exit_with_config_error(str(exc), "slack-socket")


@main.command()
@click.option(
    "--role",
    type=click.Choice(["api", "worker", "simulator", "slack-socket"]),
    help="Default: this container's.",
)
@click.option("--port", type=int, help="Port of the API or simulator. Default: from the container's command.")
def healthcheck(role: str | None, port: int | None) -> None:
    """Check the bridge process this container runs (the image's HEALTHCHECK): one line,
    `healthy: ...` and exit 0, or `unhealthy: <reason>` and exit 1."""
    from bridge.healthcheck import check, main_command, report, role_of

    detected, detected_port = role_of(main_command())
    report(check(role or detected, port if port is not None else detected_port))  # type: ignore[arg-type]


@main.command()
@click.option(
    "--check", is_flag=True, help="Only say whether the data needs upgrading: exit 0 if not, 1 if so."
)
def migrate(check: bool) -> None:
    """Upgrade the data in Redis to this version's layout, in place (safe to run again)."""
    import asyncio

    from bridge.redis_url import connect
    from bridge.store.layout import LAYOUT_VERSION, LayoutError, migrate, stored_version

    settings = load_settings()

    async def run() -> int:
        redis = connect(settings.redis_url)
        try:
            if check:
                version = await stored_version(redis)
                shown = "empty" if version is None else f"layout {version}"
                click.echo(f"redis: {shown}; this bridge: layout {LAYOUT_VERSION}")
                return 0 if version in (None, LAYOUT_VERSION) else 1
            await migrate(redis, report=click.echo)
            return 0
        finally:
            await redis.aclose()

    try:
        sys.exit(asyncio.run(run()))
    except LayoutError as exc:
        exit_with_config_error(str(exc), "migrate")


@main.group()
def secrets() -> None:
    """Secrets stored in Redis (club MPC tokens, webhook secrets)."""


@secrets.command("reseal")
def secrets_reseal() -> None:
    """Seal every stored secret again with the newest key of BRIDGE_SECRET_KEY (the first listed).

    Rotate a key by listing the new one first, running this, then dropping the old one. Exit 1
    when some value could be opened by none of the listed keys (left as it is, named in the log).
    """
    import asyncio

    from bridge.crypto import SecretBox
    from bridge.logs import configure_logging
    from bridge.redis_url import connect
    from bridge.reseal import reseal_all

    settings = load_settings()
    box = SecretBox(settings.require_secret_key())
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> int:
        redis = connect(settings.redis_url)
        try:
            tallies = await reseal_all(redis, box)
        finally:
            await redis.aclose()
        for name, tally in tallies.items():
            click.echo(
                f"{name}: {tally.resealed} resealed, {tally.current} already current, "
                f"{tally.unreadable} unreadable, {tally.changed} changed meanwhile"
            )
        return 1 if any(tally.unreadable for tally in tallies.values()) else 0

    sys.exit(asyncio.run(run()))


@main.command("config-reference")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "env"]),
    default="markdown",
    show_default=True,
    help="markdown: docs/configuration.md; env: deploy/.env.example.",
)
def config_reference(fmt: str) -> None:
    """Print every BRIDGE_* variable with its default and meaning."""
    from bridge.config_docs import render

    click.echo(render(fmt), nl=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- watch (an API client)


api_url_option = click.option(
    "--api-url",
    envvar="BRIDGE_API_URL",
    default=DEFAULT_API_URL,
    show_default=True,
    help="The bridge API (env BRIDGE_API_URL).",
)
api_key_option = click.option(
    "--api-key",
    envvar="BRIDGE_API_KEY",
    help="An admin key of BRIDGE_API_KEYS or a managed key bk_... (env BRIDGE_API_KEY).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


def _client(api_url: str, api_key: str | None) -> BridgeClient:
    return BridgeClient(api_url, api_key)


def _run(api_url: str, api_key: str | None, action: Callable[[BridgeClient], Any]) -> Any:
    client = _client(api_url, api_key)
    try:
        return action(client)
    except ApiProblem as exc:
        _fail(str(exc))
    finally:
        client.close()


def _show_watch(watch: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(watch, indent=2))
        return
    click.echo(f"{watch['id']}  {watch['state']}  {watch['loyalty_club_slug']} / {watch['import_id']}")
    for bulk in watch["bulks"]:
        click.echo(f"  {bulk_line(bulk)}")


def _shaped(pattern: str, what: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback refusing a value that is not the whole of ``pattern`` (as the API would)."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if isinstance(value, str) and not matches(pattern, value):
            raise click.BadParameter(f"{value!r} is not {what}")
        return value

    return check


@main.group()
def watch() -> None:
    """Create, list, show, stop and follow watches through the API."""


@watch.command("create")
@api_url_option
@api_key_option
@json_option
@click.option("--club", required=True, help="MPC loyalty club slug.", callback=_shaped(SLUG, "a club slug"))
@click.option(
    "--import-id", required=True, help="MPC import id.", callback=_shaped(IMPORT_ID, "an import id")
)
@click.option("--bulk", "bulks", multiple=True, type=int, help="A bulk id (repeat); none: the whole import.")
@click.option("--slack-channel", help="Slack channel id or #name for the import card.")
@click.option("--notify-progress", is_flag=True, help="Also announce count changes (bulk.progress).")
def watch_create(
    api_url: str,
    api_key: str | None,
    as_json: bool,
    club: str,
    import_id: str,
    bulks: tuple[int, ...],
    slack_channel: str | None,
    notify_progress: bool,
) -> None:
    """Watch an import (or some of its bulks)."""
    body: dict[str, Any] = {
        "loyalty_club_slug": club,
        "import_id": import_id,
        "notify_progress": notify_progress,
    }
    if bulks:
        body["bulk_ids"] = list(bulks)
    if slack_channel:
        body["slack"] = {"channel": slack_channel}
    _show_watch(_run(api_url, api_key, lambda c: c.call("POST", "/v1/watches", json=body)), as_json)


@watch.command("list")
@api_url_option
@api_key_option
@json_option
@click.option("--club", help="Only this club's watches.", callback=_shaped(SLUG, "a club slug"))
@click.option("--state", type=click.Choice(["active", "completed", "stopped", "expired", "error"]))
def watch_list(api_url: str, api_key: str | None, as_json: bool, club: str | None, state: str | None) -> None:
    """Watches, newest first."""
    params = {k: v for k, v in (("loyalty_club_slug", club), ("state", state)) if v}
    items = _run(api_url, api_key, lambda c: list(c.pages("/v1/watches", params)))
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for item in items:
        done = sum(1 for b in item["bulks"] if b["status"] in ("finished", "failed"))
        click.echo(
            f"{item['id']}  {item['state']:<9}  {item['loyalty_club_slug']} / {item['import_id']}  "
            f"{done}/{len(item['bulks'])} bulks done"
        )


@watch.command("show")
@api_url_option
@api_key_option
@json_option
@click.argument("watch_id", callback=_shaped(WATCH_ID, "a watch id (wch_...)"))
def watch_show(api_url: str, api_key: str | None, as_json: bool, watch_id: str) -> None:
    """A watch and every bulk's state."""
    _show_watch(_run(api_url, api_key, lambda c: c.call("GET", f"/v1/watches/{watch_id}")), as_json)


@watch.command("stop")
@api_url_option
@api_key_option
@json_option
@click.argument("watch_id", callback=_shaped(WATCH_ID, "a watch id (wch_...)"))
def watch_stop(api_url: str, api_key: str | None, as_json: bool, watch_id: str) -> None:
    """Stop a watch."""
    _show_watch(_run(api_url, api_key, lambda c: c.call("DELETE", f"/v1/watches/{watch_id}")), as_json)


@main.group()
def clubs() -> None:
    """Club settings through the API (an admin key): the Slack channels that may watch a club."""


@clubs.command("slack-channels")
@api_url_option
@api_key_option
@json_option
@click.argument("club")
@click.argument("channel_ids", nargs=-1)
@click.option("--clear", is_flag=True, help="No channel may watch the club from Slack any more.")
def clubs_slack_channels(
    api_url: str, api_key: str | None, as_json: bool, club: str, channel_ids: tuple[str, ...], clear: bool
) -> None:
    """Show, or set (CHANNEL_IDS, e.g. C0123456789), the Slack channels allowed to watch CLUB
    with the slash command and the card's buttons."""
    if clear and channel_ids:
        raise click.UsageError("give channel ids or --clear, not both")
    path = f"/v1/clubs/{club}/slack-channels"
    if channel_ids or clear:
        body = {"channel_ids": list(channel_ids)}
        answer = _run(api_url, api_key, lambda c: c.call("PUT", path, json=body))
    else:
        answer = _run(api_url, api_key, lambda c: c.call("GET", path))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    allowed = answer["channel_ids"]
    click.echo(f"{club}: {', '.join(allowed)}" if allowed else f"{club}: no Slack channel may watch it")


@watch.command("follow")
@api_url_option
@api_key_option
@click.argument("watch_id", callback=_shaped(WATCH_ID, "a watch id (wch_...)"))
def watch_follow(api_url: str, api_key: str | None, watch_id: str) -> None:
    """A live view of the import (a bar per bulk, events as they arrive) until it completes."""
    from rich.console import Console

    state = _run(api_url, api_key, lambda c: follow(c, watch_id, Console()))
    sys.exit(0 if state == "completed" else 1)


# ---------------------------------------------------------------------------- keys (an API client)


def _key_line(key: dict[str, Any]) -> str:
    return f"{key['id']}  {key['role']:<6}  {','.join(key['clubs'])}  {key['name']}  (by {key['created_by']})"


@main.group()
def keys() -> None:
    """Create, list and revoke managed API keys (limited to clubs) through the API, with an admin key."""


@keys.command("create")
@api_url_option
@api_key_option
@json_option
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option("--club", "clubs", multiple=True, required=True, help="A club the key holds (repeat).")
@click.option(
    "--role",
    type=click.Choice(["editor", "viewer"]),
    default="viewer",
    show_default=True,
    help="editor: read and write its clubs' resources; viewer: read only.",
)
def keys_create(
    api_url: str, api_key: str | None, as_json: bool, name: str, clubs: tuple[str, ...], role: str
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    body = {"name": name, "clubs": list(clubs), "role": role}
    created = _run(api_url, api_key, lambda c: c.call("POST", "/v1/api-keys", json=body))
    if as_json:
        click.echo(json.dumps(created, indent=2))
        return
    click.echo(_key_line(created))
    click.echo(f"key: {created['key']}")
    click.echo("Store it now: it is not shown again.", err=True)


@keys.command("list")
@api_url_option
@api_key_option
@json_option
def keys_list(api_url: str, api_key: str | None, as_json: bool) -> None:
    """Managed keys, newest first (never the keys themselves)."""
    items = _run(api_url, api_key, lambda c: list(c.pages("/v1/api-keys")))
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for item in items:
        click.echo(_key_line(item))


@keys.command("revoke")
@api_url_option
@api_key_option
@click.argument("key_id")
def keys_revoke(api_url: str, api_key: str | None, key_id: str) -> None:
    """Revoke a key: every API process refuses it within a second."""
    _run(api_url, api_key, lambda c: c.call("DELETE", f"/v1/api-keys/{key_id}"))
    click.echo(f"{key_id} revoked")
