"""The console in headless Chromium: sign-in, live rows, stop, redeliver, the new-watch form,
keyboard use, narrow and wide screens, and no request leaving the app's origin."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import API_KEY, Stack, screenshot, sign_in
from tests.integration.stack import wait_for

SLUG = "infinity-mall"
OTHER = "outlet-park"


WORKER_REPORT_WAIT_S = 15
"""Longest wait for the worker's first totals (it adds them to Redis every 5 s)."""
BRIDGE_SEES_WAIT_S = 20
"""Longest wait for the bridge to have polled a change the simulator was told."""
STREAMS = "**/ui/stream*"


def new_import(stack: Stack, slug: str = SLUG, bulks: tuple[int, ...] = (11, 12)) -> str:
    import_id = str(uuid.uuid4())
    stack.put_import(slug, import_id, [{"id": b, "status": "waiting"} for b in bulks])
    return import_id


def watch(stack: Stack, import_id: str, slug: str = SLUG, **extra: Any) -> str:
    created = stack.api("POST", "/v1/watches", {"loyalty_club_slug": slug, "import_id": import_id, **extra})
    watch_id: str = created["id"]
    return watch_id


def test_sign_in_then_sign_out(page: Page) -> None:
    page.goto("/ui/watches")
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    page.get_by_label("API key").fill("wrong-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That key is not valid.")
    sign_in(page)
    expect(page.get_by_role("heading", name="Watches")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["bridge_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    page.goto("/ui/watches")
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))


def test_a_row_changes_live_when_the_simulator_flips_a_bulk(page: Page, stack: Stack) -> None:
    import_id = new_import(stack)
    watch_id = watch(stack, import_id)
    sign_in(page)
    row = page.locator(f'tr[data-watch-id="{watch_id}"]')
    expect(row).to_have_attribute("data-state", "active")
    page.evaluate("window.__notReloaded = true")
    stack.flip(SLUG, import_id, 11, status="working")
    expect(row.locator("svg.bar")).to_have_attribute("aria-label", re.compile("1 working"))
    for bulk in (11, 12):
        stack.flip(SLUG, import_id, bulk, status="finished", members_created_number=5)
    expect(row).to_have_attribute("data-state", "completed", timeout=20_000)
    expect(row.locator("svg.bar")).to_have_attribute("aria-label", "2 finished")
    # A watch created meanwhile appears at the top, still without a reload.
    second = watch(stack, new_import(stack))
    expect(page.locator(f'tr[data-watch-id="{second}"]')).to_be_visible()
    assert page.evaluate("window.__notReloaded") is True


def test_the_detail_page_follows_bulks_live(page: Page, stack: Stack) -> None:
    import_id = new_import(stack)
    watch_id = watch(stack, import_id)
    sign_in(page)
    page.goto(f"/ui/watches/{watch_id}")
    bulk = page.locator('tr[data-bulk-id="11"]')
    expect(bulk).to_have_attribute("data-status", "waiting", timeout=20_000)
    stack.flip(SLUG, import_id, 11, status="working")
    expect(bulk).to_have_attribute("data-status", "working")
    expect(page.locator("[data-event-id]").first).to_be_visible()


def bulk_status(stack: Stack, watch_id: str, bulk_id: int) -> str | None:
    for bulk in stack.api("GET", f"/v1/watches/{watch_id}")["bulks"]:
        if bulk["bulk_id"] == bulk_id:
            status: str | None = bulk["status"]
            return status
    return None


def bridge_sees(stack: Stack, watch_id: str, bulk_id: int, status: str) -> None:
    """Wait until the bridge has polled the bulk in this status."""
    wait_for(
        lambda: bulk_status(stack, watch_id, bulk_id) == status,
        BRIDGE_SEES_WAIT_S,
        f"bulk {bulk_id} seen {status}",
    )


def hold_streams(page: Page) -> list[Route]:
    """Keep the page's live stream from connecting until ``release_streams``."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(STREAMS, hold)
    return held


def release_streams(page: Page, held: list[Route]) -> None:
    for _ in range(200):  # the browser asks for the stream just after the page loads
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for its live stream"
    for route in held:
        route.continue_()
    page.unroute(STREAMS)


def test_the_detail_page_catches_up_with_a_change_made_before_its_stream_connected(
    page: Page, stack: Stack
) -> None:
    import_id = new_import(stack)
    watch_id = watch(stack, import_id)
    bridge_sees(stack, watch_id, 11, "waiting")
    sign_in(page)
    held = hold_streams(page)
    page.goto(f"/ui/watches/{watch_id}")
    bulk = page.locator('tr[data-bulk-id="11"]')
    expect(bulk).to_have_attribute("data-status", "waiting")
    stack.flip(SLUG, import_id, 11, status="working")
    bridge_sees(stack, watch_id, 11, "working")
    release_streams(page, held)  # the change was published before anyone on this page listened
    expect(bulk).to_have_attribute("data-status", "working")
    expect(page.locator(".summary")).to_have_attribute("data-state", "active")


def test_the_list_catches_up_with_changes_made_before_its_stream_connected(page: Page, stack: Stack) -> None:
    import_id = new_import(stack)
    first = watch(stack, import_id)
    bridge_sees(stack, first, 11, "waiting")
    sign_in(page)
    held = hold_streams(page)
    page.goto("/ui/watches")
    row = page.locator(f'tr[data-watch-id="{first}"]')
    expect(row.locator("svg.bar")).to_have_attribute("aria-label", re.compile("2 waiting"))
    stack.flip(SLUG, import_id, 11, status="working")
    bridge_sees(stack, first, 11, "working")
    second = watch(stack, new_import(stack))
    release_streams(page, held)
    expect(row.locator("svg.bar")).to_have_attribute("aria-label", re.compile("1 working"))
    expect(page.locator(f'tr[data-watch-id="{second}"]')).to_be_visible()
    # The rows the snapshot put in place still follow later changes.
    stack.flip(SLUG, import_id, 12, status="working")
    expect(row.locator("svg.bar")).to_have_attribute("aria-label", re.compile("2 working"))


def test_stop_asks_first_then_stops(page: Page, stack: Stack) -> None:
    watch_id = watch(stack, new_import(stack))
    sign_in(page)
    page.goto(f"/ui/watches/{watch_id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Stop watch").click()
    expect(page.locator(".summary")).to_have_attribute("data-state", "active")
    assert stack.api("GET", f"/v1/watches/{watch_id}")["state"] == "active"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop watch").click()
    expect(page.locator(".summary")).to_have_attribute("data-state", "stopped")
    assert stack.api("GET", f"/v1/watches/{watch_id}")["state"] == "stopped"


def test_redeliver_sends_the_event_again(page: Page, stack: Stack) -> None:
    import_id = new_import(stack, bulks=(21,))
    # A receiver that is never there: the delivery waits for its retry, an hour away.
    sub = stack.api("POST", "/v1/subscriptions", {"url": "http://127.0.0.1:9/hook", "import_id": import_id})
    watch_id = watch(stack, import_id)
    sign_in(page)
    page.goto(f"/ui/watches/{watch_id}")
    stack.flip(SLUG, import_id, 21, status="working")
    button = page.get_by_role("button", name=re.compile("^Redeliver")).first
    expect(button).to_be_visible(timeout=20_000)
    button.click()
    expect(page).to_have_url(re.compile(f"/ui/watches/{watch_id}$"))
    kinds = [d["kind"] for d in stack.api("GET", f"/v1/subscriptions/{sub['id']}/deliveries")["items"]]
    assert "redelivery" in kinds
    # The attempt log shows the deliveries with the body each one sends.
    page.goto(f"/ui/subscriptions/{sub['id']}")
    expect(page.locator("[data-delivery-id]")).to_have_count(len(kinds))
    page.get_by_text("Request body sent").first.click()
    expect(page.locator("pre").first).to_contain_text(import_id)


def test_new_watch_form_shows_the_bad_import_id_next_to_the_field(page: Page) -> None:
    sign_in(page)
    page.get_by_role("link", name="New watch").click()
    page.get_by_label("Club").fill(SLUG)
    page.get_by_label("Import id").fill("not an id!")
    page.get_by_role("button", name="Create watch").click()
    field = page.get_by_label("Import id")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#e-import_id")).to_be_visible()
    expect(field).to_have_value("not an id!")
    page.get_by_label("Import id").fill(str(uuid.uuid4()))
    page.get_by_role("button", name="Create watch").click()
    expect(page).to_have_url(re.compile(r"/ui/watches/wch_[0-9a-f]{24}$"))


def test_subscriptions_show_the_secret_once(page: Page) -> None:
    sign_in(page)
    page.goto("/ui/subscriptions")
    page.get_by_label("URL", exact=True).fill("http://127.0.0.1:9/created-in-the-console")
    page.get_by_role("button", name="Create subscription").click()
    secret = page.locator("#secret-value")
    expect(secret).to_have_text(re.compile(r"^whsec_"))
    first = secret.inner_text()
    page.goto("/ui/subscriptions")
    expect(page.locator("#secret-value")).to_have_count(0)
    url = "http://127.0.0.1:9/created-in-the-console"
    expect(page.get_by_text("created-in-the-console")).to_be_visible()
    row = page.locator("tr[data-subscription-id]", has_text="created-in-the-console")
    page.get_by_role("button", name=f"Disable {url}").click()
    expect(row).to_have_attribute("data-enabled", "false")
    page.get_by_role("button", name=f"Enable {url}").click()
    expect(row).to_have_attribute("data-enabled", "true")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Rotate the secret of {url}").click()
    expect(page.locator("#secret-value")).to_have_text(re.compile(r"^whsec_"))
    assert page.locator("#secret-value").inner_text() != first
    page.get_by_role("button", name=f"Send a test event to {url}").click()
    expect(page.locator("[data-delivery-id] .ev-type")).to_have_text("webhook.test")


def test_keyboard_only(page: Page, stack: Stack) -> None:
    page.goto("/ui/sign-in")
    page.keyboard.type(API_KEY)  # the key field has the focus
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Watches")).to_be_visible()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "New watch":
            break
    else:
        raise AssertionError("Tab never reached the New watch link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New watch")).to_be_visible()


def test_no_request_leaves_the_origin(page: Page, stack: Stack) -> None:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    watch_id = watch(stack, new_import(stack))
    sign_in(page)
    for path in (
        "/ui/watches",
        f"/ui/watches/{watch_id}",
        "/ui/watches/new",
        "/ui/subscriptions",
        "/ui/clubs",
        "/ui/system",
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle") if "watches/" not in path else None
    assert seen and all(url.startswith(stack.api_url + "/") for url in seen), [
        u for u in seen if not u.startswith(stack.api_url)
    ]


def test_pages_fit_360_and_1920_wide(page: Page, stack: Stack, tmp_path: Path) -> None:
    import_id = new_import(stack, bulks=(31, 32, 33))
    watch_id = watch(stack, import_id, slack={"channel": "C0123456789"})
    stack.flip(SLUG, import_id, 31, status="finished", members_created_number=120)
    stack.flip(SLUG, import_id, 32, status="working")
    sign_in(page)
    pages = {
        "watches": "/ui/watches",
        "watch": f"/ui/watches/{watch_id}",
        "new-watch": "/ui/watches/new",
        "subscriptions": "/ui/subscriptions",
        "clubs": "/ui/clubs",
        "system": "/ui/system",
    }
    # The System page at its widest: once the worker has reported its totals (every 5 s), whose
    # long sample names must wrap too.
    page.goto("/ui/system")
    for _ in range(WORKER_REPORT_WAIT_S * 2):
        if "bridge_polls_total" in page.content():
            break
        page.wait_for_timeout(500)
        page.reload()
    for width, height in ((360, 740), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            page.goto(path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} is {overflow}px wider than {width}px"
            screenshot(page, f"{name}-{width}", tmp_path)
    page.context.clear_cookies()
    page.goto("/ui/sign-in")
    screenshot(page, "sign-in-1920", tmp_path)


def test_a_club_key_cannot_see_another_club(page: Page, stack: Stack) -> None:
    made = stack.api("POST", "/v1/api-keys", {"name": "browser test", "clubs": [SLUG], "role": "editor"})
    theirs = watch(stack, new_import(stack, slug=OTHER), slug=OTHER)
    sign_in(page, made["key"])
    expect(page.get_by_role("heading", name="Watches")).to_be_visible()
    expect(page.locator(f'tr[data-watch-id="{theirs}"]')).to_have_count(0)
    # Live: a new watch of its own club appears, one of the other club does not.
    page.evaluate("window.__notReloaded = true")
    other_new = watch(stack, new_import(stack, slug=OTHER), slug=OTHER)
    own_new = watch(stack, new_import(stack))
    expect(page.locator(f'tr[data-watch-id="{own_new}"]')).to_be_visible()
    expect(page.locator(f'tr[data-watch-id="{other_new}"]')).to_have_count(0)
    assert page.evaluate("window.__notReloaded") is True
    expect(page.get_by_role("link", name="System")).to_have_count(0)
    response = page.goto(f"/ui/watches/{theirs}")
    assert response is not None and response.status == 404
