"""The OpenAPI document's shared parts: error responses with examples, the webhooks, and the offline UI.

After Litestar builds the document, :func:`finish_document` makes it say what the API does: the
``webhooks`` section (each event type's payload, generated from the types that encode it), no
error answers the API never gives, and component names from the domain rather than from Python
modules.

The Swagger UI assets are vendored in ``bridge/api/static/swagger-ui`` (see its ``VERSION``) and
served by the API itself, so ``/schema`` renders without internet access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Litestar
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import (
    Components,
    Example,
    Link,
    OpenAPIResponse,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
    Tag,
)
from litestar.openapi.spec.base import BaseSchemaObject
from litestar.router import Router
from litestar.static_files import create_static_files_router

from bridge import __version__
from bridge.api.auth import SECURITY_SCHEME
from bridge.api.errors import ErrorResponse
from bridge.config import WEBHOOK_TIMEOUT_S
from bridge.core.catalog import EVENT_CATALOG
from bridge.webhooks.signing import HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP

SCHEMA_PATH: Final = "/schema"
ASSETS_PATH: Final = "/schema/assets"
NO_FAVICON: Final = "<link rel='icon' href='data:,'>"
"""Litestar's default favicon comes from a CDN; the docs page must not need the internet."""
COMPONENT_REF: Final = "#/components/schemas/{name}"
STATIC_DIR: Final = Path(__file__).parent / "static" / "swagger-ui"

ERROR_EXAMPLES: Final = {
    400: (
        "invalid_json",
        "the request body is not valid JSON: JSON is malformed: invalid character (byte 0)",
    ),
    401: ("unauthorized", "missing or invalid API key"),
    403: ("forbidden_club", "this key does not hold club infinity-mall"),
    404: ("not_found", "no watch wch_0123456789abcdef01234567"),
    409: ("conflict", "the resource changed meanwhile"),
    413: ("request_entity_too_large", "request body too large"),
    415: ("unsupported_media_type", "unsupported media type: send application/json"),
    422: ("validation_error", "the request is not valid"),
    429: ("rate_limited", "a webhook.test was sent to this subscription less than 10 s ago"),
    503: ("service_unavailable", "a dependency is not available"),
}
ERROR_DESCRIPTIONS: Final = {
    400: "The body or a parameter cannot be read (not JSON, nested too deeply, bad cursor).",
    401: "No API key, or not a valid one (an admin key of BRIDGE_API_KEYS, or a managed key not revoked).",
    403: (
        "The key may not do this: `forbidden` (a viewer key writing, a club key on an admin route) "
        "or `forbidden_club` (a club the key does not hold)."
    ),
    404: "No such resource.",
    409: "The resource changed meanwhile, or a per-club limit is reached (`limit_reached`).",
    413: "The body is larger than 64 kB.",
    415: "The body is not application/json.",
    422: "The body or a parameter breaks a validation rule; `details` names the field.",
    429: "Asked again too soon; `Retry-After` says when it may be asked.",
    503: "A dependency (Redis) is not available.",
}


ID_FROM_BODY: Final = "$response.body#/id"
LINKS: Final = (
    (
        ("POST", "/v1/watches", ("201", "200")),
        "watch_id",
        (
            ("GET", "/v1/watches/{watch_id}"),
            ("GET", "/v1/watches/{watch_id}/events"),
            ("DELETE", "/v1/watches/{watch_id}"),
        ),
    ),
    (
        ("POST", "/v1/subscriptions", ("201",)),
        "subscription_id",
        (
            ("GET", "/v1/subscriptions/{subscription_id}"),
            ("PATCH", "/v1/subscriptions/{subscription_id}"),
            ("GET", "/v1/subscriptions/{subscription_id}/deliveries"),
            ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"),
            ("POST", "/v1/subscriptions/{subscription_id}/test"),
            ("DELETE", "/v1/subscriptions/{subscription_id}"),
        ),
    ),
    (
        ("POST", "/v1/subscriptions/{subscription_id}/test", ("202",)),
        "delivery_id",
        (("GET", "/v1/deliveries/{delivery_id}"), ("POST", "/v1/deliveries/{delivery_id}/redeliver")),
    ),
    (
        ("POST", "/v1/deliveries/{delivery_id}/redeliver", ("202",)),
        "delivery_id",
        (("GET", "/v1/deliveries/{delivery_id}"),),
    ),
    (
        ("POST", "/v1/api-keys", ("201",)),
        "key_id",
        (("GET", "/v1/api-keys/{key_id}"), ("DELETE", "/v1/api-keys/{key_id}")),
    ),
)
"""OpenAPI links: the ``id`` a creating answer carries names the resource of these operations
(what clients, and schemathesis' stateful phase, follow)."""


def declare_links(app: Litestar) -> None:
    """Add :data:`LINKS` to the document's responses (Litestar's route decorators cannot)."""
    paths = app.openapi_schema.paths or {}

    def operation(method: str, path: str) -> Any:
        item = paths.get(path)
        return None if item is None else getattr(item, method.lower(), None)

    for (method, path, statuses), parameter, targets in LINKS:
        source = operation(method, path)
        if source is None or not source.responses:
            continue
        links: dict[str, Link | Any] = {}
        for target_method, target_path in targets:
            target = operation(target_method, target_path)
            if target is not None and target.operation_id:
                links[target.operation_id] = Link(
                    operation_id=target.operation_id, parameters={parameter: ID_FROM_BODY}
                )
        for status in statuses:
            response = source.responses.get(status)
            if isinstance(response, OpenAPIResponse) and links:
                response.links = {**(response.links or {}), **links}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """Documented error answers, all in the ``{"error": {...}}`` shape."""
    specs = {}
    for status in statuses:
        code, message = ERROR_EXAMPLES[status]
        details = (
            [
                {
                    "message": "Expected `str` matching regex '^[a-z0-9][a-z0-9-]{0,63}$'",
                    "key": "loyalty_club_slug",
                    "source": "body",
                }
            ]
            if status == 422
            else None
        )
        specs[status] = ResponseSpec(
            data_container=ErrorResponse,
            description=ERROR_DESCRIPTIONS[status],
            generate_examples=False,
            examples=[
                Example(summary=code, value={"error": {"code": code, "message": message, "details": details}})
            ],
        )
    return specs


READ_ERRORS: Final = (400, 401, 404, 422)
WRITE_ERRORS: Final = (400, 401, 403, 413, 415, 422)
CREATE_ERRORS: Final = WRITE_ERRORS
"""A creation may also be refused for the club (403 ``forbidden_club``)."""

SCOPE_WORDS: Final = {
    "admin": "**Scope:** admin keys only (`BRIDGE_API_KEYS`); a managed key gets 403 `forbidden`.",
    "editor": "**Scope:** admin keys, and managed `editor` keys {what}; a `viewer` key gets 403 `forbidden`.",
    "viewer": "**Scope:** admin keys, and managed keys of either role {what}.",
}


def scoped(role: str, what: str = "") -> str:
    """An operation's description: which keys may call it and what a club key sees of it."""
    return SCOPE_WORDS[role].format(what=what)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="mpc-import-bridge",
        version=__version__,
        description=(
            "Watches Placewise MPC member imports and announces every bulk status change to Slack and "
            "signed webhooks. Every `/v1` route needs `Authorization: Bearer <key>`: an admin key "
            "(BRIDGE_API_KEYS) sees and changes everything; a managed key (`bk_...`, from "
            "`POST /v1/api-keys`) holds some clubs as an `editor` or a `viewer`. A club key sees only "
            "its clubs' watches, subscriptions and deliveries (another club's is a 404), creating for "
            "a club it does not hold is a 403 `forbidden_club`, and a viewer's write is a 403 "
            '`forbidden`. Every error is `{"error": {"code", "message", "details"}}`.'
        ),
        path=SCHEMA_PATH,
        # Invented examples need polyfactory and faker, which the image leaves out (see Dockerfile).
        create_examples=False,
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description=(
                        "An admin key from BRIDGE_API_KEYS (every club, every route), or a managed key "
                        "`bk_...` limited to its clubs: role `editor` (read and write) or `viewer` (read "
                        "only). Each operation's description says which keys it accepts."
                    ),
                )
            }
        ),
        tags=[
            Tag(name="watches", description="Imports being followed, their bulks' snapshots and timelines."),
            Tag(name="credentials", description="MPC tokens per club (write-only)."),
            Tag(
                name="webhooks",
                description="Subscriptions, their deliveries, and the catalog of event types they carry.",
            ),
            Tag(name="api-keys", description="Managed keys limited to clubs and a role (admin keys only)."),
            Tag(name="health", description="Liveness, readiness and metrics (no auth)."),
        ],
        render_plugins=[
            SwaggerRenderPlugin(
                path=["/", "/swagger"],
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=NO_FAVICON,
            ),
            JsonRenderPlugin(),
            YamlRenderPlugin(),
        ],
    )


def assets_router() -> Router:
    return create_static_files_router(path=ASSETS_PATH, directories=[STATIC_DIR], include_in_schema=False)


def _request_structs() -> list[type[msgspec.Struct]]:
    """The API's request bodies: Structs in ``bridge.api`` that reject unknown fields."""
    found: list[type[msgspec.Struct]] = []
    pending: list[type[msgspec.Struct]] = [msgspec.Struct]
    while pending:
        kind = pending.pop()
        pending += kind.__subclasses__()
        if kind.__module__.startswith("bridge.api") and kind.__struct_config__.forbid_unknown_fields:
            found.append(kind)
    return sorted(found, key=lambda k: k.__name__)


def exact_request_schemas(app: Litestar) -> None:
    """Describe request bodies with msgspec's own JSON Schema, the one that validates them.

    Litestar's generator drops constraints nested in containers (``list[Annotated[int, Meta(ge=1)]]``)
    and never says ``additionalProperties: false``; a client generated from the document must
    know exactly what is accepted.
    """
    _, exact = msgspec.json.schema_components(_request_structs(), ref_template=COMPONENT_REF)
    components = app.openapi_schema.components
    schemas: dict[str, Any] = components.schemas if components.schemas is not None else {}
    for name, schema in exact.items():
        schemas[name] = schema
    components.schemas = schemas


# ------------------------------------------------------------------ the finished document


@dataclass
class RawJson(BaseSchemaObject):
    """A part of the document given as JSON, written out exactly (Litestar's own serialisation
    drops every ``null``, and an example payload has meaningful ones)."""

    value: dict[str, Any]

    def to_schema(self) -> dict[str, Any]:
        return self.value


WEBHOOK_HEADERS: Final = (
    (
        HEADER_ID,
        "The event's id: the same on every retry and redelivery (deduplicate on it)",
        "evt_5f0c4b2a9e8d7c6b5a4f3e2d1c0b9a88",
    ),
    (HEADER_TIMESTAMP, "Unix seconds when this attempt was signed", "1796454000"),
    (
        HEADER_SIGNATURE,
        "`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}`, space-separated when two "
        "secrets sign (during a rotation)",
        "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    ),
)
"""The Standard Webhooks headers every delivery carries."""


def _webhook(event_type: str) -> dict[str, Any]:
    info = EVENT_CATALOG[event_type]
    return {
        "post": {
            "operationId": "webhook_" + re.sub(r"[^a-z0-9]+", "_", event_type),
            "summary": info.description,
            "tags": ["webhooks"],
            "parameters": [
                {
                    "name": name,
                    "in": "header",
                    "required": True,
                    "description": description,
                    "schema": {"type": "string"},
                    "example": example,
                }
                for name, description, example in WEBHOOK_HEADERS
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": COMPONENT_REF.format(name=info.payload.__name__)},
                        "example": info.example_json(),
                    }
                },
            },
            "responses": {
                "2XX": {
                    "description": f"Received: any 2xx within the timeout ({WEBHOOK_TIMEOUT_S:g} s by "
                    "default); anything else is retried on the schedule"
                },
                "410": {"description": "Gone: the subscription is disabled and nothing more is sent"},
            },
        }
    }


def declare_webhooks(app: Litestar) -> None:
    """One ``webhooks`` entry per event type, with its payload's schema (msgspec's, from the type
    that encodes it), the three Standard Webhooks headers and an example."""
    document = app.openapi_schema
    _, generated = msgspec.json.schema_components(
        [info.payload for info in EVENT_CATALOG.values()], ref_template=COMPONENT_REF
    )
    components = document.components
    schemas: dict[str, Any] = components.schemas if components.schemas is not None else {}
    for name, schema in generated.items():
        schemas[name] = RawJson(schema)
    components.schemas = schemas
    webhooks: dict[str, Any] = {event_type: RawJson(_webhook(event_type)) for event_type in EVENT_CATALOG}
    document.webhooks = webhooks


def _is_litestar_default_error(response: Any) -> bool:
    """Litestar's automatic 400 ``Validation Exception`` answer: the API never gives it (its
    validation errors are 422 in the project's envelope)."""
    for media in (getattr(response, "content", None) or {}).values():
        schema = getattr(media, "schema", None)
        if isinstance(schema, Schema) and schema.properties and "status_code" in schema.properties:
            return True
    return False


def drop_default_errors(app: Litestar) -> None:
    for item in (app.openapi_schema.paths or {}).values():
        for field in fields(item):
            operation = getattr(item, field.name)
            if isinstance(operation, Operation) and operation.responses:
                for status, response in list(operation.responses.items()):
                    if _is_litestar_default_error(response):
                        del operation.responses[status]


_GENERIC_NAME: Final = re.compile(r"^(?P<outer>\w+)_(?:[\w]+\.)+(?P<inner>\w+)_$")
_SUFFIXES: Final = ("Out", "Item")


def domain_name(name: str) -> str:
    """``WatchOut`` -> ``Watch``; ``Page_bridge.api.schemas.TimelineItem_`` -> ``TimelinePage``."""
    generic = _GENERIC_NAME.match(name)
    if generic is not None:
        return domain_name(generic["inner"]).removesuffix("Item") + generic["outer"]
    return name.removesuffix("Out") if name.endswith("Out") and len(name) > len("Out") else name


def _rename_refs(node: Any, renamed: dict[str, str]) -> None:
    if isinstance(node, Reference):
        node.ref = renamed.get(node.ref, node.ref)
    elif isinstance(node, RawJson):
        return
    elif is_dataclass(node):
        for field in fields(node):
            _rename_refs(getattr(node, field.name), renamed)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                node[key] = renamed.get(value, value)
            else:
                _rename_refs(value, renamed)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, renamed)


def domain_component_names(app: Litestar) -> None:
    """Name components as the domain does, so generated clients get ``Watch``, ``TimelinePage``."""
    document = app.openapi_schema
    schemas = document.components.schemas or {}
    names = {name: domain_name(name) for name in schemas}
    if len(set(names.values())) != len(names):
        raise RuntimeError(f"two OpenAPI components would share a name: {sorted(names.values())}")
    document.components.schemas = {names[name]: schema for name, schema in schemas.items()}
    for name, schema in document.components.schemas.items():
        if isinstance(schema, Schema) and schema.title is not None:
            schema.title = name  # generators name classes after titles (Litestar's: "Page[WatchOut]")
    refs = {
        COMPONENT_REF.format(name=old): COMPONENT_REF.format(name=new)
        for old, new in names.items()
        if old != new
    }
    _rename_refs(document, refs)


def finish_document(app: Litestar) -> None:
    """Everything Litestar's generator cannot say by itself (see the module's docstring)."""
    exact_request_schemas(app)
    declare_links(app)
    drop_default_errors(app)
    domain_component_names(app)
    declare_webhooks(app)
