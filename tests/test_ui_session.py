"""The dashboard's server side over real HTTP: the page and its headers, the login and its session cookie,
CSRF and Origin checks on the admin API, the login rate limit, and the endpoints the page's charts and
provider table read. (The page itself, in a browser: tests/test_ui_browser.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.gateway.admin import dashboard_key
from proxy.ui.session import COOKIE, issue, verify
from tests.conftest import Proxy
from tests.test_gateway_e2e import MASTER, ask, create_key, gateway, sdk

__all__ = ["gateway"]  # the fixture, imported for this module's tests


def browser_like(proxy: Proxy) -> httpx.Client:
    """A client that behaves like the page: same-origin requests with the Origin header set."""
    client = httpx.Client(base_url=proxy.url, timeout=30, headers={"origin": proxy.url})
    proxy._clients.append(client)
    return client


def logged_in(proxy: Proxy) -> tuple[httpx.Client, str]:
    http = browser_like(proxy)
    r = http.post("/ui/login", json={"master_key": MASTER})
    assert r.status_code == 200, r.text
    return http, r.json()["csrf"]


def test_the_page_is_served_with_a_strict_csp(gateway: Proxy) -> None:
    r = httpx.get(gateway.url + "/ui")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # Nothing on the page comes from another host.
    assert "http://" not in r.text and "https://" not in r.text and "//" + "cdn" not in r.text
    js = httpx.get(gateway.url + "/ui/static/app.js")
    for name in ("core.js", "charts.js", "app.css", "favicon.svg"):
        assert httpx.get(gateway.url + "/ui/static/" + name).status_code == 200, name
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert (
        httpx.get(gateway.url + "/ui/static/app.js", headers={"if-none-match": js.headers["etag"]}).status_code == 304
    )
    missing = httpx.get(gateway.url + "/ui/static/nope.js")
    assert missing.status_code == 404 and "open /ui" in missing.json()["error"]["message"]


def test_without_a_master_key_the_page_says_how_to_turn_the_gateway_on(
    start_proxy: Callable[..., Proxy],
) -> None:
    proxy = start_proxy()
    r = httpx.get(proxy.url + "/ui")
    assert r.status_code == 404
    assert "SWITCHBOARD_MASTER_KEY" in r.text and "restart" in r.text
    assert r.headers["content-type"].startswith("text/html")
    login = httpx.post(proxy.url + "/ui/login", json={"master_key": "x" * 20}, headers={"origin": proxy.url})
    assert login.status_code == 404 and "SWITCHBOARD_MASTER_KEY" in login.json()["error"]["message"]


def test_login_sets_a_strict_http_only_cookie_without_the_master_key(gateway: Proxy) -> None:
    http = browser_like(gateway)
    assert http.get("/ui/session").json() == {"authenticated": False}
    r = http.post("/ui/login", json={"master_key": MASTER})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    attrs = [a.strip() for a in cookie.split(";")]
    assert attrs[0].startswith(COOKIE + "=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attrs)
    assert "Secure" not in attrs  # plain http on loopback; https below
    max_age = int(next(a for a in attrs if a.startswith("Max-Age=")).split("=")[1])
    assert 0 < max_age <= 24 * 3600
    assert MASTER not in cookie and MASTER not in r.text
    assert r.headers["cache-control"] == "no-store"
    state = http.get("/ui/session").json()
    assert state["authenticated"] is True and state["csrf"] == r.json()["csrf"]
    # The admin API takes the session in place of the master key, for reading...
    assert http.get("/admin/v1/keys").status_code == 200
    # ...and, behind a TLS-terminating proxy, the cookie is Secure.
    behind_tls = http.post("/ui/login", json={"master_key": MASTER}, headers={"x-forwarded-proto": "https"})
    assert "Secure" in [a.strip() for a in behind_tls.headers["set-cookie"].split(";")]


def test_a_wrong_key_is_refused_and_logins_are_rate_limited(gateway: Proxy) -> None:
    http = browser_like(gateway)
    bad = http.post("/ui/login", json={"key": MASTER})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "master_key"
    for _ in range(5):
        r = http.post("/ui/login", json={"master_key": "not-the-master-key"})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert "set-cookie" not in r.headers
    r = http.post("/ui/login", json={"master_key": MASTER})
    assert r.status_code == 429, "the right key is refused too while the address is locked out"
    assert int(r.headers["retry-after"]) >= 1
    assert "too many failed logins" in r.json()["error"]["message"]


def test_changes_need_the_csrf_token_and_our_origin(gateway: Proxy) -> None:
    http, csrf = logged_in(gateway)
    # No token: refused, nothing created.
    r = http.post("/admin/v1/keys", json={"name": "no-token"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    # A token of another session (a valid cookie elsewhere) does not match this one.
    _, other_csrf = logged_in(gateway)
    r = http.post("/admin/v1/keys", json={"name": "wrong-token"}, headers={"x-csrf-token": other_csrf})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    # The right token from another site's page: refused on its Origin.
    r = http.post(
        "/admin/v1/keys", json={"name": "cross-site"}, headers={"x-csrf-token": csrf, "origin": "https://evil.example"}
    )
    assert r.status_code == 403 and "another site" in r.json()["error"]["message"]
    # No Origin nor Referer at all: refused (a browser always sends one on POST).
    bare = httpx.Client(base_url=gateway.url, cookies=http.cookies, timeout=30)
    gateway._clients.append(bare)
    assert bare.post("/admin/v1/keys", json={"name": "bare"}, headers={"x-csrf-token": csrf}).status_code == 403
    assert http.get("/admin/v1/keys").json()["data"] == []
    # Token and Origin: accepted.
    r = http.post("/admin/v1/keys", json={"name": "ok"}, headers={"x-csrf-token": csrf})
    assert r.status_code == 201, r.text
    key_id = r.json()["id"]
    assert http.patch(f"/admin/v1/keys/{key_id}", json={"rpm": 5}).status_code == 403
    assert http.patch(f"/admin/v1/keys/{key_id}", json={"rpm": 5}, headers={"x-csrf-token": csrf}).status_code == 200
    assert http.delete(f"/admin/v1/keys/{key_id}").status_code == 403
    # Behind a proxy that rewrites Host, the browser's host comes in X-Forwarded-Host (which a page on
    # another site cannot set without a preflight).
    proxied = {"x-csrf-token": csrf, "origin": "https://gw.example", "x-forwarded-host": "gw.example"}
    assert http.patch(f"/admin/v1/keys/{key_id}", json={"rpm": 6}, headers=proxied).status_code == 200
    # Logging in needs our Origin too (login CSRF).
    cross = httpx.post(gateway.url + "/ui/login", json={"master_key": MASTER}, headers={"origin": "http://evil.test"})
    assert cross.status_code == 403 and "set-cookie" not in cross.headers


def test_logout_and_forged_expired_or_foreign_cookies(gateway: Proxy) -> None:
    http, csrf = logged_in(gateway)
    key = dashboard_key(gateway.runtime.gateway)
    value = http.cookies[COOKIE]
    assert verify(key, value) is not None
    # Tampered, expired, or signed under another master key: 401, log in again.
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    expired, _ = issue(key, now=time.time() - 9 * 3600)
    foreign, _ = issue(b"another master key's derived key.")
    for bad in (tampered, expired, foreign, "v1.garbage"):
        r = httpx.get(gateway.url + "/admin/v1/keys", cookies={COOKIE: bad})
        assert r.status_code == 401 and r.json()["error"]["code"] == "session_expired", bad
    # Logout without the token is refused; with it the cookie is cleared.
    assert http.post("/ui/logout", json={}).status_code == 403
    r = http.post("/ui/logout", json={}, headers={"x-csrf-token": csrf})
    assert r.status_code == 200
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert http.get("/ui/session").json() == {"authenticated": False}
    assert http.get("/admin/v1/keys").status_code == 401
    # The master key as a bearer still works, cookie or not (the CLI and scripts).
    r = httpx.get(gateway.url + "/admin/v1/keys", headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200


def test_daily_usage_stacks_by_model_or_provider_with_a_key_filter(gateway: Proxy) -> None:
    key, body = create_key(gateway, budget=1.0, period="day")
    other, _ = create_key(gateway)
    ask(sdk(gateway, key))
    ask(sdk(gateway, key), model="local/other")
    ask(sdk(gateway, other))
    http, _ = logged_in(gateway)
    r = http.get("/admin/v1/usage/daily", params={"by": "model", "since": "7d", "key": body["id"]})
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert {(row["day"], row["group"]) for row in rows} == {(today, "local/m"), (today, "local/other")}
    by_model = {row["group"]: row for row in rows}
    assert by_model["local/m"]["requests"] == 1 and by_model["local/m"]["cost"] == pytest.approx(0.000096)
    assert by_model["local/m"]["input_tokens"] == 12 and by_model["local/m"]["output_tokens"] == 9
    everyone = http.get("/admin/v1/usage/daily", params={"by": "provider"}).json()["data"]
    assert [(row["group"], row["requests"]) for row in everyone] == [("local", 3)]
    bad = http.get("/admin/v1/usage/daily", params={"by": "colour"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "by"


def test_provider_status_is_what_doctor_reports_without_secrets(
    gateway: Proxy, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, _ = logged_in(gateway)
    r = http.get("/admin/v1/providers")
    assert r.status_code == 200, r.text
    rows = {row["provider"]: row for row in r.json()["data"]}
    assert rows["local"]["usable"] is True and rows["local"]["source"] == "models.json"
    assert rows["openai"]["usable"] is False
    assert "OPENAI_API_KEY" in rows["openai"]["fix"] and "switchboard login" in rows["openai"]["fix"]
    assert "upstream-secret" not in r.text and MASTER not in r.text
    assert str(isolated_env) not in r.text  # the server's directories are not shown
    # A virtual key cannot read it; nobody without a session or the master key can.
    key, _ = create_key(gateway)
    assert httpx.get(gateway.url + "/admin/v1/providers", headers={"authorization": f"Bearer {key}"}).status_code == 403
    assert httpx.get(gateway.url + "/admin/v1/providers").status_code == 401
