"""``/v1/event-types``: the event catalog, each type with a description, its schema and an example.

What a receiver's developers need before the first delivery: the same schemas as the OpenAPI
document's ``webhooks`` section, generated from the types that encode the payloads.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from msgspec import Meta, Struct

from bridge.api.docs import errors, scoped
from bridge.api.schemas import Page
from bridge.core.catalog import EVENT_CATALOG


class EventTypeOut(Struct, kw_only=True):
    type: Annotated[str, Meta(examples=["bulk.finished"])]
    description: str
    schema: Annotated[dict[str, Any], Meta(description="JSON Schema (Draft 2020-12) of the webhook body")]
    example: Annotated[dict[str, Any], Meta(description="A webhook body of this type")]


def catalog_page() -> Page[EventTypeOut]:
    items = [
        EventTypeOut(
            type=info.name, description=info.description, schema=info.schema(), example=info.example_json()
        )
        for info in EVENT_CATALOG.values()
    ]
    return Page(items=items, next_cursor=None)


_CATALOG = catalog_page()
"""Built once: the catalog does not change while the process runs."""


class EventTypeController(Controller):
    path = "/event-types"
    tags = ["webhooks"]

    @get(
        "/",
        summary="Every event type webhooks carry: description, JSON Schema, example",
        description=scoped("viewer", "(the catalog is the same for every key)"),
        responses=errors(401),
    )
    async def list_event_types(self) -> Page[EventTypeOut]:
        return _CATALOG
