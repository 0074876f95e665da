"""Installed extensions that break: reported at start, disabled, and the proxy keeps serving.

Each test "installs" packages without pip: a ``<name>-<version>.dist-info`` directory with ``METADATA`` and
``entry_points.txt`` next to the package's module in a directory put first on the child process's
``PYTHONPATH``, which is all ``importlib.metadata`` reads. ``switchboard serve``, ``providers`` and
``doctor`` run as real processes, so discovery is the real one (and the example package, installed in the
test environment, is found beside them).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import local_provider, write_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.serve_process import child_env, run_cli, serving

BROKEN_IMPORT = """
import libacme_native_that_is_not_installed  # the package forgot a dependency

EXTENSION = None
"""

BAD_CONTRACT = """
from providers.extensions import ExtensionBase


class HalfWire:  # no stream_decoder
    name = "half-wire"

    def build(self, req, target): ...
    def decode_response(self, body, target): ...
    def error(self, target, status, body, headers): ...


class Ext(ExtensionBase):
    def providers(self):
        return [{"id": "half", "name": "Half", "api": "half-wire", "baseUrl": "http://127.0.0.1:9"}]

    def wire_apis(self):
        return {"half-wire": HalfWire}


EXTENSION = Ext()
"""

OVERRIDE = """
import os

from providers.extensions import ExtensionBase


class Ext(ExtensionBase):
    def providers(self):
        return [{
            "id": "openai",
            "name": "OpenAI via the corporate relay",
            "api": "openai-completions",
            "baseUrl": os.environ["RELAY_URL"],
            "envVars": ["OPENAI_API_KEY"],
            "models": [{"id": "relay-model"}],
        }]


EXTENSION = Ext()
"""

PACKAGES = {
    # distribution name: (version, module, source)
    "sb-broken-import": ("0.1", "sb_broken_import", BROKEN_IMPORT),
    "sb-bad-contract": ("0.2", "sb_bad_contract", BAD_CONTRACT),
    "sb-override": ("1.0", "sb_override", OVERRIDE),
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for dist, (version, module, source) in PACKAGES.items():
        info = root / f"{module}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[switchboard.providers]\nx = {module}:EXTENSION\n")
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def home(isolated_env: Path, fake_openai: FakeOpenAI) -> Iterator[Path]:
    local_provider(isolated_env, fake_openai)  # an ordinary provider that must keep serving
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}})
    yield isolated_env


def _env(site: Path, fake: FakeOpenAI) -> dict[str, str]:
    return child_env({"RELAY_URL": fake.url + "/v1", "OPENAI_API_KEY": "sk-relay-test-0123456789"}, site)


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR switchboard: " in line]


def _reports(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = run_cli("providers", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return {r["package"]: r for r in json.loads(out.stdout)["extensions"]}


def test_broken_extensions_are_reported_once_and_the_rest_serves(
    home: Path, site: Path, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = _env(site, fake_openai)
    with serving(tmp_path, env) as served:
        with openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0) as client:
            answer = client.chat.completions.create(model="local/m", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="half/x", messages=[{"role": "user", "content": "hi"}])
        errors = _errors(served.output)
        assert "extensions: switchboard-acme" in served.output  # the good one, beside the broken ones
    assert len(errors) == 3, served.output
    by_package = {next(p for p in PACKAGES if f"extension {p} " in line): line for line in errors}
    assert by_package["sb-broken-import"].endswith(
        "extension sb-broken-import 0.1 (entry point x = sb_broken_import:EXTENSION) is disabled: import failed: "
        "ModuleNotFoundError: No module named 'libacme_native_that_is_not_installed'"
    )
    assert by_package["sb-bad-contract"].endswith(
        "is disabled: wire API 'half-wire' (HalfWire) lacks stream_decoder of the contract"
    )
    assert "provider id 'openai' is built in" in by_package["sb-override"]
    assert '"extensions": {"allow_override": ["openai"]}' in by_package["sb-override"]

    reports = _reports(env)
    assert {p: r["status"] for p, r in reports.items()} == {
        "sb-bad-contract": "failed",
        "sb-broken-import": "failed",
        "sb-override": "failed",
        "switchboard-acme": "active",
    }
    assert reports["sb-bad-contract"]["version"] == "0.2" and reports["sb-bad-contract"]["providers"] == []
    text = run_cli("providers", env=env).stdout
    assert "FAILED  extension sb-broken-import 0.1 (entry point x = sb_broken_import:EXTENSION)" in text
    doctor = run_cli("doctor", env=env).stdout
    assert doctor.count("problem: extension sb-") == 3
    assert "FAILED  extension sb-bad-contract 0.2" in doctor and "ok      extension switchboard-acme" in doctor
    rows = json.loads(run_cli("doctor", "--json", env=env).stdout)
    assert "half" not in {r["provider"] for r in rows}
    assert len([p for p in rows[0]["problems"] if "extension sb-" in p]) == 3


def test_a_builtin_is_replaced_only_with_the_operators_opt_in(
    home: Path, site: Path, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = _env(site, fake_openai)
    providers = {p["id"]: p for p in json.loads(run_cli("providers", "--json", env=env).stdout)["providers"]}
    assert providers["openai"]["origin"] == "builtin"

    write_json(home / "config.json", {"discovery": {"enabled": False}, "extensions": {"allow_override": ["openai"]}})
    listed = json.loads(run_cli("providers", "--json", env=env).stdout)
    providers = {p["id"]: p for p in listed["providers"]}
    assert providers["openai"]["origin"] == "sb-override 1.0"
    assert {r["package"]: r["overrides"] for r in listed["extensions"]}["sb-override"] == ["openai"]
    with serving(tmp_path, env) as served:
        with openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0) as client:
            client.chat.completions.create(model="openai/relay-model", messages=[{"role": "user", "content": "hi"}])
        assert not any("sb-override" in line for line in _errors(served.output))
    assert fake_openai.last.body["model"] == "relay-model"
    assert fake_openai.last.headers["Authorization"] == "Bearer sk-relay-test-0123456789"


def test_disabled_extensions_are_not_loaded(home: Path, site: Path, fake_openai: FakeOpenAI) -> None:
    write_json(
        home / "config.json",
        {"discovery": {"enabled": False}, "extensions": {"disabled": ["sb_broken_import", "switchboard-acme"]}},
    )
    env = _env(site, fake_openai)
    out = run_cli("providers", "--json", env=env)
    reports = {r["package"]: r for r in json.loads(out.stdout)["extensions"]}
    assert reports["sb-broken-import"]["status"] == reports["switchboard-acme"]["status"] == "disabled"
    assert "acme" not in {p["id"] for p in json.loads(out.stdout)["providers"]}
    assert "libacme_native" not in out.stderr  # never imported
    assert len(_errors(out.stderr)) == 2  # the two other broken ones are still reported


def test_a_bad_extensions_setting_names_its_key(home: Path, site: Path, fake_openai: FakeOpenAI) -> None:
    write_json(home / "config.json", {"extensions": {"allow_overide": ["openai"]}})
    out = run_cli("models", env=_env(site, fake_openai))
    assert out.returncode == 2
    assert "unknown field `allow_overide`" in out.stderr and "extensions" in out.stderr
