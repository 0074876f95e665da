"""The dashboard in a real headless browser: Playwright driving Debian's chromium (scripts/browser installs
it) against the gateway served by uvicorn, with the real ``openai`` SDK using the keys the page creates.

Screenshots of every view are kept under ``$SWITCHBOARD_TEST_ARTIFACTS/ui`` (default ``tests/artifacts``).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Proxy
from tests.test_gateway_e2e import MASTER, ask, gateway, sdk

__all__ = ["gateway"]  # the fixture, imported for this module's tests

CHROMIUM = Path(os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: run scripts/browser (Debian's chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package: pip install -e '.[test]'")
expect = sync_api.expect

#: As root, chromium needs --no-sandbox; the rest stop it calling Google's hosts (this network is closed).
_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long the page may take to show what the server already has (it polls; this is only a deadline).
WAIT_MS = 20_000
ARTIFACTS = Path(os.environ.get("SWITCHBOARD_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts") / "ui"


@contextlib.contextmanager
def browser_page(base_url: str) -> Iterator[sync_api.Page]:
    """A page in a fresh headless chromium; fails the test if the page raised or broke its CSP."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=base_url)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # A Content-Security-Policy violation is reported on the console: the page must cause none.
        page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
        yield page
        context.close()
        browser.close()
        assert errors == [], f"the page raised errors: {errors}"


@pytest.fixture
def page(gateway: Proxy) -> Iterator[sync_api.Page]:
    with browser_page(gateway.url) as page:
        yield page


def shot(page: sync_api.Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: sync_api.Page) -> None:
    page.goto("/ui")
    page.fill("#master-key", MASTER)
    page.click("#login-button")
    expect(page.locator("#app-view")).to_be_visible(timeout=WAIT_MS)


def create_key_in_page(page: sync_api.Page, name: str, **fields: str) -> str:
    page.click('a[data-tab="keys"]')
    page.click("#new-key")
    page.fill('#key-form input[name="name"]', name)
    for field, value in fields.items():
        if field == "period":
            page.select_option('#key-form select[name="period"]', value)
        else:
            page.fill(f'#key-form input[name="{field}"]', value)
    page.click("#key-submit")
    secret = page.locator("#secret-value")
    expect(secret).to_have_text(re.compile(r"^sk-sb-\S{40,}$"), timeout=WAIT_MS)
    return secret.inner_text()


def key_row(page: sync_api.Page, name: str) -> sync_api.Locator:
    return page.locator("#keys-table tbody tr", has=page.locator("td b", has_text=name))


def test_log_in_create_a_key_use_it_see_its_cost_and_disable_it(gateway: Proxy, page: sync_api.Page) -> None:
    page.goto("/ui")
    expect(page.locator("#login-view")).to_be_visible()
    shot(page, "01-login")
    page.fill("#master-key", "sk-sb-master-this-is-not-it")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_contain_text("not the master key", timeout=WAIT_MS)
    expect(page.locator("#app-view")).to_be_hidden()
    shot(page, "02-login-refused")
    log_in(page)

    # The session cookie: HttpOnly (the page's script cannot read it), SameSite=Strict, bounded, no key.
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["secure"] is False  # plain http on loopback
    assert time.time() < cookie["expires"] <= time.time() + 24 * 3600
    assert MASTER not in cookie["value"]
    assert page.evaluate("document.cookie") == ""
    assert MASTER not in page.content()

    plaintext = create_key_in_page(page, "ci-nightly", budget="1", period="day", rpm="60")
    shot(page, "03-key-created")
    page.click("#secret-dialog [data-close]")
    row = key_row(page, "ci-nightly")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("60 rpm")
    expect(row).to_contain_text(plaintext[:10])
    assert plaintext not in page.content()  # shown once, in the dialog only

    client = sdk(gateway, plaintext)
    assert ask(client).choices[0].message.content
    assert ask(client, model="local/other").choices

    # The requests appear with their status, target and cost (the ledger writes in batches: the page polls).
    page.click('a[data-tab="requests"]')
    rows = page.locator("#requests-table tbody tr")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    first = rows.filter(has_text="local/m")
    expect(first).to_contain_text("ci-nightly")
    expect(first).to_contain_text("200")
    expect(first.locator("td.cost")).to_have_text("$0.000096")  # 12 x $2/M + 9 x $8/M
    expect(first).to_contain_text("12 / 9")
    shot(page, "04-requests")

    # The spend chart, filtered to the key, stacked by model, with the key's daily budget line.
    page.click('a[data-tab="overview"]')
    key_id = page.locator("#chart-key option", has_text="ci-nightly").get_attribute("value")
    page.select_option("#chart-key", key_id)
    spend = page.locator("#spend-chart")
    expect(spend.locator('rect[data-group="local/m"]')).to_have_count(1, timeout=WAIT_MS)
    expect(spend.locator("line.budget")).to_have_count(1)
    expect(spend.locator("text.budget-label")).to_have_text("budget $1.00/day")
    # local/other has no price: tokens but no spend.
    expect(page.locator("#tokens-legend")).to_contain_text("local/other")
    expect(page.locator("#spend-legend")).not_to_contain_text("local/other")
    expect(page.locator("#stat-requests")).to_have_text("2")
    expect(page.locator("#budgets")).to_contain_text("of $1.00 / day")
    shot(page, "05-overview-by-model")
    page.click('[data-stack="provider"]')
    expect(spend.locator('rect[data-group="local"]')).to_have_count(1, timeout=WAIT_MS)
    expect(spend.locator("rect.bar")).to_have_count(1)
    shot(page, "06-overview-by-provider")

    page.click('a[data-tab="providers"]')
    local = page.locator('#providers-table tr[data-provider="local"]')
    expect(local).to_contain_text("in use", timeout=WAIT_MS)
    expect(local).to_contain_text("models.json")
    expect(page.locator("#providers-summary")).to_contain_text("1 of ")
    shot(page, "07-providers")
    page.click("#providers-missing summary")
    openai_row = page.locator('#providers-missing tr[data-provider="openai"]')
    expect(openai_row).to_be_visible()
    expect(openai_row).to_contain_text("OPENAI_API_KEY")
    shot(page, "07-providers-not-set-up")

    # Disabled in the page: the SDK is refused at once.
    page.click('a[data-tab="keys"]')
    key_row(page, "ci-nightly").locator('[data-action="disable"]').click()
    expect(key_row(page, "ci-nightly")).to_contain_text("disabled", timeout=WAIT_MS)
    shot(page, "08-key-disabled")
    with pytest.raises(openai.AuthenticationError) as err:
        ask(client)
    assert err.value.status_code == 401 and err.value.code == "key_disabled"


def test_edit_rotate_and_delete_a_key_and_log_out(gateway: Proxy, page: sync_api.Page) -> None:
    log_in(page)
    old = create_key_in_page(page, "team-a")
    page.click("#secret-dialog [data-close]")
    assert ask(sdk(gateway, old)).choices

    # Edit limits: models, budget and period, tpm, expiry.
    key_row(page, "team-a").locator('[data-action="edit"]').click()
    page.fill('#key-form input[name="models"]', "local/m")
    page.fill('#key-form input[name="budget"]', "5")
    page.select_option('#key-form select[name="period"]', "week")
    page.fill('#key-form input[name="tpm"]', "100000")
    page.fill('#key-form input[name="expires"]', "30d")
    shot(page, "09-edit-key")
    page.click("#key-submit")
    row = key_row(page, "team-a")
    expect(row).to_contain_text("100k tpm", timeout=WAIT_MS)
    expect(row).to_contain_text("of $5.00 / week")
    expect(row.locator(".chip")).to_have_text(["local/m"])
    with pytest.raises(openai.PermissionDeniedError):
        ask(sdk(gateway, old), model="local/other")

    # A bad value is refused with the server's message, in the dialog.
    row.locator('[data-action="edit"]').click()
    page.fill('#key-form input[name="expires"]', "yesterday-ish")
    page.click("#key-submit")
    expect(page.locator("#key-error")).to_contain_text("expires", timeout=WAIT_MS)
    page.click("#key-dialog [data-close]")

    # Rotate: a new plaintext shown once; the old key stops working.
    row.locator('[data-action="rotate"]').click()
    expect(page.locator("#confirm-text")).to_contain_text("stops working")
    page.click("#confirm-ok")
    secret = page.locator("#secret-value")
    expect(secret).to_have_text(re.compile(r"^sk-sb-\S{40,}$"), timeout=WAIT_MS)
    new = secret.inner_text()
    assert new != old
    page.click("#secret-dialog [data-close]")
    with pytest.raises(openai.AuthenticationError):
        ask(sdk(gateway, old))
    assert ask(sdk(gateway, new)).choices

    # Delete, after a confirmation (cancelling keeps the key).
    key_row(page, "team-a").locator('[data-action="delete"]').click()
    page.click("#confirm-dialog [data-close]")
    expect(key_row(page, "team-a")).to_have_count(1)
    key_row(page, "team-a").locator('[data-action="delete"]').click()
    page.click("#confirm-ok")
    expect(key_row(page, "team-a")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#keys-empty")).to_be_visible()
    with pytest.raises(openai.AuthenticationError):
        ask(sdk(gateway, new))

    # From the page's own origin, a change without the CSRF token is refused; with it, accepted.
    refused = page.evaluate(
        """async () => (await fetch('/admin/v1/keys', {method: 'POST', headers: {'content-type': 'application/json'},
                          body: '{"name": "forged"}'})).status"""
    )
    assert refused == 403

    page.click("#logout")
    expect(page.locator("#login-view")).to_be_visible(timeout=WAIT_MS)
    assert page.context.cookies() == [] or page.context.cookies()[0]["value"] == ""
    status = page.evaluate("async () => (await fetch('/admin/v1/keys')).status")
    assert status == 401


def test_without_a_master_key_the_page_says_how_to_turn_the_gateway_on(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    with browser_page(proxy.url) as page:
        response = page.goto("/ui")
        assert response is not None and response.status == 404
        expect(page.locator("h1")).to_have_text("The dashboard is off")
        expect(page.locator("main")).to_contain_text("SWITCHBOARD_MASTER_KEY")
        shot(page, "00-gateway-off")
