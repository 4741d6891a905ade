"""A client generated from the served OpenAPI document, with no generator warnings, works against
a running API: the document is a contract a downstream team can build from alone."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from mpc_simulator import SimulatorControl
from tests.integration.conftest import API_KEY, SLUG, eventually
from tests.integration.stack import Stack

pytestmark = pytest.mark.slow
PACKAGE: Final = "generated_bridge_client"
GENERATOR_CONFIG: Final = "post_hooks: []\n"
"""No formatter run over the output: the generator's own checks are what is tested."""
GENERATE_TIMEOUT_S: Final = 120
IMPORT = "imp-generated"


@pytest.fixture
def generated(stack: Stack, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(stack.api_url + "/schema/openapi.json").content)
    config = tmp_path / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / PACKAGE),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT_S,
        cwd=tmp_path,
        check=False,
    )
    output = run.stdout + run.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield (
            importlib.import_module(PACKAGE),
            output if run.returncode == 0 else f"exit {run.returncode}\n{output}",
        )
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


async def test_a_generated_client_builds_without_warnings_and_drives_the_api(
    generated: tuple[Any, str], stack: Stack, control: SimulatorControl
) -> None:
    package, output = generated
    assert output.strip() == f"Generating {Path(package.__file__).parent}", output
    api = importlib.import_module(PACKAGE + ".api.watches.v1_watches_create")
    show = importlib.import_module(PACKAGE + ".api.watches.v1_watches_watch_id_show")
    events = importlib.import_module(PACKAGE + ".api.watches.v1_watches_watch_id_events_events")
    subscribe = importlib.import_module(PACKAGE + ".api.webhooks.v1_subscriptions_create")
    catalog = importlib.import_module(PACKAGE + ".api.webhooks.v1_event_types_list_event_types")
    models = importlib.import_module(PACKAGE + ".models")
    client = package.AuthenticatedClient(
        base_url=stack.api_url, token=API_KEY, raise_on_unexpected_status=True
    )

    await control.put_import(SLUG, IMPORT, [{"id": 1, "status": "working"}])
    async with client:
        created = await api.asyncio(
            client=client, body=models.WatchCreate(loyalty_club_slug=SLUG, import_id=IMPORT)
        )
        assert isinstance(created, models.Watch) and created.import_id == IMPORT
        shown = await show.asyncio(created.id, client=client)
        assert isinstance(shown, models.Watch) and shown.id == created.id

        async def two_events() -> Any:
            page = await events.asyncio(created.id, client=client)
            return page if isinstance(page, models.TimelinePage) and len(page.items) >= 2 else None

        page = await eventually(two_events, 20, "bulk.discovered and bulk.started")
        assert [item.type_ for item in page.items[:2]] == ["bulk.discovered", "bulk.started"]
        assert [item.position for item in page.items[:2]] == [1, 2]
        after = await events.asyncio(created.id, client=client, after=1)
        assert isinstance(after, models.TimelinePage) and after.items[0].position == 2

        subscription = await subscribe.asyncio(
            client=client,
            body=models.SubscriptionCreate(
                url=stack.receiver.url(), event_types=["bulk.*", "import.completed"]
            ),
        )
        assert isinstance(subscription, models.SubscriptionCreated) and subscription.secret.startswith(
            "whsec_"
        )
        types = await catalog.asyncio(client=client)
        assert isinstance(types, models.EventTypePage) and len(types.items) == 13

        refused = await subscribe.asyncio(
            client=client,
            body=models.SubscriptionCreate(url=stack.receiver.url(), event_types=["bulk.finsihed"]),
        )
        assert isinstance(refused, models.ErrorResponse) and refused.error.code == "validation_error"
    await asyncio.sleep(0)
