"""Type a slash command as Slack would send it: signed with the app's signing secret.

    python -m bridge_tools.slack_command --api-url http://127.0.0.1:8080 --secret S \\
        [--channel C0…] [--user U0…] [--command /mpc-watch] "infinity-mall 89405ae3-…"

Posts the command to ``{api-url}/slack/events`` (form-encoded, ``X-Slack-Signature`` and
``X-Slack-Request-Timestamp`` as Slack computes them) and prints the answer the person would see
in Slack. ``make demo`` prints a ready-made line.
"""

from __future__ import annotations

import sys

import click
import httpx

from bridge_tools.slack_standin import command_body, signed


@click.command()
@click.option("--api-url", required=True, help="The bridge API.")
@click.option("--secret", required=True, envvar="BRIDGE_SLACK_SIGNING_SECRET", help="The signing secret.")
@click.option("--channel", default="C0SLACKDEMO", show_default=True, help="The channel it is typed in.")
@click.option("--user", default="U0DEMO", show_default=True, help="Who types it.")
@click.option("--command", "name", default="/mpc-watch", show_default=True)
@click.argument("text", default="help")
def main(api_url: str, secret: str, channel: str, user: str, name: str, text: str) -> None:
    """Send TEXT (what follows the command) as a signed slash command; print the answer."""
    body = command_body(text, command=name, channel=channel, user=user)
    try:
        response = httpx.post(
            api_url.rstrip("/") + "/slack/events", content=body, headers=signed(secret, body), timeout=10
        )
    except httpx.HTTPError as exc:
        click.echo(f"slack_command: cannot reach {api_url}: {exc}", err=True)
        sys.exit(2)
    if response.status_code != 200:
        click.echo(f"slack_command: HTTP {response.status_code} {response.text[:300]}", err=True)
        sys.exit(1)
    click.echo(response.json().get("text", ""))


if __name__ == "__main__":
    main()
