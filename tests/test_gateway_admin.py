"""The admin API over HTTP, against a proxy served in-process with a master key (SQLite store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.gateway.contract import hash_key
from proxy.gateway.store import SqlStore, database_url
from tests.conftest import Proxy, local_provider
from tests.fakes.openai_upstream import FakeOpenAI

MASTER = "sk-sb-master-admin-tests-0123456789abcdef"
ADMIN = "/admin/v1"


@pytest.fixture
def gateway(
    start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch, isolated_env: Path, fake_openai: FakeOpenAI
) -> Proxy:
    local_provider(isolated_env, fake_openai)
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    return start_proxy()


@pytest.fixture
def admin(gateway: Proxy) -> httpx.Client:
    client = gateway.http()
    client.headers["authorization"] = f"Bearer {MASTER}"
    return client


def _error(response: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert MASTER not in response.text
    return dict(body["error"])


def _find_key(sb_home: Path, plaintext: str) -> Any:
    """The store's answer for a key, read through a store of the test's own (same SQLite file)."""

    async def find() -> Any:
        store = SqlStore(database_url(None, sb_home))
        await store.start()
        try:
            return await store.find_key(hash_key(plaintext))
        finally:
            await store.close()

    return asyncio.run(find())


def _chat(gateway: Proxy, key: str) -> httpx.Response:
    return gateway.http().post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "local/m", "messages": [{"role": "user", "content": "hi"}]},
    )


# -- switched off, and authentication ------------------------------------------------------------------------


def test_admin_api_is_off_without_a_master_key(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    for method, path in (("GET", "/keys"), ("POST", "/keys"), ("GET", "/usage")):
        err = _error(
            proxy.http().request(method, ADMIN + path, headers={"authorization": "Bearer x"}, json={}), 404, "not_found"
        )
        assert "SWITCHBOARD_MASTER_KEY" in err["message"] and "master_key in config.json" in err["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-key"},
        {"authorization": MASTER},
        {"x-api-key": "sk-sb-unknownkey"},
        {"authorization": "Basic " + MASTER},
    ],
)
def test_no_or_wrong_key_is_401(gateway: Proxy, headers: dict[str, str]) -> None:
    err = _error(gateway.http().get(ADMIN + "/keys", headers=headers), 401, "invalid_api_key")
    assert "master key" in err["message"] and err["type"] == "invalid_request_error"


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "api-key"])
def test_master_key_in_each_header(gateway: Proxy, header: str) -> None:
    value = f"Bearer {MASTER}" if header == "authorization" else MASTER
    response = gateway.http().get(ADMIN + "/keys", headers={header: value})
    assert response.status_code == 200 and response.json() == {"object": "list", "data": []}


def test_virtual_key_is_403(gateway: Proxy, admin: httpx.Client) -> None:
    key = admin.post(ADMIN + "/keys", json={"name": "v"}).json()["key"]
    for headers in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
        err = _error(gateway.http().get(ADMIN + "/keys", headers=headers), 403, "master_key_required")
        assert key not in err["message"]


# -- keys -----------------------------------------------------------------------------------------------------


def test_create_list_get(gateway: Proxy, admin: httpx.Client) -> None:
    body = {
        "name": "ci",
        "models": ["local/*"],
        "budget": 2,
        "period": "day",
        "rpm": 5,
        "tpm": 1000,
        "parallel": 2,
        "expires": "2h",
        "metadata": {"team": "ml"},
    }
    response = admin.post(ADMIN + "/keys", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["key"]
    assert key.startswith("sk-sb-") and created["key_prefix"] == key[:10] + "…"
    assert created["models"] == ["local/*"] and created["budget"] == 2 and created["period"] == "day"
    assert (created["rpm"], created["tpm"], created["parallel"]) == (5, 1000, 2)
    assert created["expires_at"] and created["budget_resets_at"] and created["metadata"] == {"team": "ml"}
    assert "key_hash" not in created and hash_key(key) not in response.text

    listing = admin.get(ADMIN + "/keys")
    assert listing.status_code == 200
    [view] = listing.json()["data"]
    assert view == {k: v for k, v in created.items() if k != "key"}
    assert key not in listing.text and hash_key(key) not in listing.text and "key_hash" not in listing.text

    one = admin.get(f"{ADMIN}/keys/{created['id']}")
    assert one.status_code == 200 and one.json() == view and key not in one.text
    # The key works on the model endpoints.
    models = gateway.http().get("/v1/models", headers={"authorization": f"Bearer {key}"})
    assert models.status_code == 200, models.text


def test_create_refusals(admin: httpx.Client) -> None:
    err = _error(admin.post(ADMIN + "/keys", json={"rpm": 0}), 400, None)
    assert err["param"] == "rpm"
    err = _error(admin.post(ADMIN + "/keys", json={"nmae": "x"}), 400, None)
    assert "'nmae'" in err["message"]
    err = _error(
        admin.post(ADMIN + "/keys", content=b"{not json", headers={"content-type": "application/json"}), 400, None
    )
    assert "JSON" in err["message"]
    err = _error(admin.post(ADMIN + "/keys", json={"expires": "2001-01-01"}), 400, None)
    assert err["param"] == "expires"
    assert admin.get(ADMIN + "/keys").json()["data"] == []


def test_unknown_key_is_404(admin: httpx.Client) -> None:
    for method, path in (
        ("GET", "/keys/key_nope"),
        ("PATCH", "/keys/key_nope"),
        ("DELETE", "/keys/key_nope"),
        ("POST", "/keys/key_nope/rotate"),
    ):
        body = {"rpm": 3} if method == "PATCH" else {}
        err = _error(admin.request(method, ADMIN + path, json=body), 404, "key_not_found")
        assert "key_nope" in err["message"]


def test_patch(gateway: Proxy, admin: httpx.Client) -> None:
    created = admin.post(ADMIN + "/keys", json={"name": "a", "rpm": 5}).json()
    response = admin.patch(f"{ADMIN}/keys/{created['id']}", json={"name": "b", "rpm": None, "budget": 3})
    assert response.status_code == 200, response.text
    view = response.json()
    assert (view["name"], view["rpm"], view["budget"]) == ("b", None, 3)
    assert "key" not in view and "key_hash" not in view
    err = _error(admin.patch(f"{ADMIN}/keys/{created['id']}", json={"key_hash": "x"}), 400, None)
    assert "'key_hash'" in err["message"]
    _error(admin.patch(f"{ADMIN}/keys/{created['id']}", json={}), 400, None)
    # Disabling takes effect at once on the model endpoints.
    assert admin.patch(f"{ADMIN}/keys/{created['id']}", json={"disabled": True}).json()["disabled"] is True
    refused = gateway.http().get("/v1/models", headers={"authorization": f"Bearer {created['key']}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_disabled"


def test_delete(gateway: Proxy, admin: httpx.Client) -> None:
    created = admin.post(ADMIN + "/keys", json={}).json()
    response = admin.delete(f"{ADMIN}/keys/{created['id']}")
    assert response.status_code == 200 and response.json() == {"id": created["id"], "deleted": True}
    _error(admin.get(f"{ADMIN}/keys/{created['id']}"), 404, "key_not_found")
    refused = gateway.http().get("/v1/models", headers={"authorization": f"Bearer {created['key']}"})
    assert refused.status_code == 401


def test_rotate(gateway: Proxy, admin: httpx.Client, isolated_env: Path) -> None:
    created = admin.post(ADMIN + "/keys", json={"name": "r"}).json()
    old = created["key"]
    assert gateway.http().get("/v1/models", headers={"authorization": f"Bearer {old}"}).status_code == 200
    # A bodiless POST still names its type: the server refuses other types (cross-site form posts).
    response = admin.post(f"{ADMIN}/keys/{created['id']}/rotate", headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    rotated = response.json()
    new = rotated["key"]
    assert new != old and rotated["id"] == created["id"] and rotated["key_prefix"] == new[:10] + "…"
    assert old not in response.text and "key_hash" not in rotated
    assert _find_key(isolated_env, old) is None
    assert _find_key(isolated_env, new).id == created["id"]
    refused = gateway.http().get("/v1/models", headers={"authorization": f"Bearer {old}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert gateway.http().get("/v1/models", headers={"authorization": f"Bearer {new}"}).status_code == 200


# -- usage and requests ---------------------------------------------------------------------------------------


def test_usage_includes_the_request_just_made(gateway: Proxy, admin: httpx.Client) -> None:
    created = admin.post(ADMIN + "/keys", json={"name": "u"}).json()
    assert _chat(gateway, created["key"]).status_code == 200
    # No wait: the endpoint flushes the ledger before it reads.
    response = admin.get(ADMIN + "/usage")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["group_by"] == "key" and report["since"].endswith("Z")
    [row] = report["data"]
    assert row["group"] == created["id"] and row["requests"] == 1
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert set(row) == {
        "group",
        "requests",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost",
    }
    by_model = admin.get(ADMIN + "/usage", params={"group_by": "model", "since": "2000-01-01"}).json()["data"]
    assert [r["requests"] for r in by_model] == [1]
    by_provider = admin.get(ADMIN + "/usage", params={"group_by": "provider", "key": created["id"]}).json()["data"]
    assert [r["group"] for r in by_provider] == ["local"]
    assert admin.get(ADMIN + "/usage", params={"key": "key_other"}).json()["data"] == []
    assert len(admin.get(ADMIN + "/usage", params={"group_by": "day", "since": "1h"}).json()["data"]) == 1
    assert _error(admin.get(ADMIN + "/usage", params={"group_by": "team"}), 400, None)["param"] == "group_by"
    assert _error(admin.get(ADMIN + "/usage", params={"since": "lately"}), 400, None)["param"] == "since"

    listing = admin.get(ADMIN + "/keys").json()["data"]
    assert listing[0]["last_used_at"] is not None


def test_requests(gateway: Proxy, admin: httpx.Client) -> None:
    a = admin.post(ADMIN + "/keys", json={"name": "a"}).json()
    b = admin.post(ADMIN + "/keys", json={"name": "b"}).json()
    for key in (a["key"], a["key"], b["key"]):
        assert _chat(gateway, key).status_code == 200
    response = admin.get(ADMIN + "/requests")
    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data) == 3 and data[0]["key_id"] == b["id"]
    assert all(r["model"] and r["provider"] == "local" and r["status"] == 200 and r["time"].endswith("Z") for r in data)
    assert data[0]["ts"] >= data[1]["ts"] >= data[2]["ts"]
    only_a = admin.get(ADMIN + "/requests", params={"key": a["id"], "limit": 1}).json()["data"]
    assert len(only_a) == 1 and only_a[0]["key_id"] == a["id"]
    text = json.dumps(data)
    assert a["key"] not in text and b["key"] not in text
    for bad in ("0", "1001", "ten"):
        assert _error(admin.get(ADMIN + "/requests", params={"limit": bad}), 400, None)["param"] == "limit"
