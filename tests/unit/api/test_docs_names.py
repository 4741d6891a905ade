"""Component names of the OpenAPI document: the domain's, never a Python module path."""

from __future__ import annotations

import pytest

from bridge.api.docs import domain_name


@pytest.mark.parametrize(
    ("litestar", "domain"),
    [
        ("WatchOut", "Watch"),
        ("Page_bridge.api.schemas.TimelineItem_", "TimelinePage"),
        ("Page_bridge.api.schemas.WatchOut_", "WatchPage"),
        ("Page_bridge.api.subscriptions.SubscriptionOut_", "SubscriptionPage"),
        ("WatchCreate", "WatchCreate"),
        ("Out", "Out"),
        ("BulkFinished", "BulkFinished"),
    ],
)
def test_litestar_names_become_domain_names(litestar: str, domain: str) -> None:
    assert domain_name(litestar) == domain
