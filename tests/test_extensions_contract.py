"""The extension contract, checked in process: :func:`providers.extensions.load` with entry points that name
objects of this module (as an installed package's ``entry_points.txt`` would). Each broken one is disabled
with a message that says what is wrong; nothing of it is registered; everything else stays."""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from providers.cloud.base import AdapterBase
from providers.extensions import GROUP, ExtensionBase, ExtensionsConfig, load
from providers.registry import load_builtin_providers
from providers.wire import _TRANSLATING
from providers.wire.openai_chat import API as OPENAI_CHAT

ROW = {"id": "tiny", "name": "Tiny", "api": "openai-completions", "baseUrl": "http://127.0.0.1:9/v1"}


class Rows(ExtensionBase):
    def __init__(self, *rows: Mapping[str, Any], wires: Mapping[str, Callable[[], Any]] | None = None) -> None:
        self.rows, self.wires = rows, wires or {}

    def providers(self) -> Sequence[Mapping[str, Any]]:
        return self.rows

    def wire_apis(self) -> Mapping[str, Callable[[], Any]]:
        return self.wires


class Raises(ExtensionBase):
    def providers(self) -> Sequence[Mapping[str, Any]]:
        raise RuntimeError("boom")


class NoAdapters:
    def providers(self) -> Sequence[Mapping[str, Any]]:
        return ()

    def wire_apis(self) -> Mapping[str, Any]:
        return {}

    def logins(self) -> Mapping[str, Any]:
        return {}


class NoStreamDecoder:
    name = "half-wire"

    def build(self, req: Any, target: Any) -> Any: ...

    def decode_response(self, body: bytes, target: Any) -> Any: ...

    def error(self, target: Any, status: int, body: bytes, headers: Any) -> Any: ...


class FullWire(NoStreamDecoder):
    name = "partial-wire"

    def stream_decoder(self, target: Any) -> Any: ...


class SyncResolve(AdapterBase):
    def available(self, provider: Any, has_key: bool, env: Any) -> bool:
        return True

    def resolve(self, provider: Any, key: Any, source: str, env: Any, previous: Any = None) -> Any:  # not async
        return None


class Flow:
    provider_id = "tiny"
    label = "Tiny"

    def login(self, ui: Any) -> dict[str, Any]:
        return {}

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        return entry


class Logins(Rows):
    def __init__(self, *rows: Mapping[str, Any], provider_id: str = "tiny") -> None:
        super().__init__(*rows)
        self.provider_id = provider_id

    def logins(self) -> Mapping[str, Callable[[], Any]]:
        flow = Flow()
        flow.provider_id = self.provider_id
        return {self.provider_id: lambda: flow}


class Adapters(Rows):
    def adapters(self) -> Mapping[str, Callable[[], Any]]:
        return {"sync": SyncResolve}


GOOD = Rows({**ROW, "models": [{"id": "t1", "contextWindow": 1000}]})
ALSO_TINY = Rows(ROW)
A_CLASS = Rows
HALF_WIRE = Rows({**ROW, "api": "half-wire"}, wires={"half-wire": NoStreamDecoder})
MISNAMED_WIRE = Rows(ROW, wires={"other-name": lambda: OPENAI_CHAT})
BAD_ROW = Rows({**ROW, "baseUrl": 42})
UNKNOWN_API = Rows({**ROW, "api": "carrier-pigeon"})
PARTIAL = Rows({**ROW, "auth": "telepathy"}, wires={"partial-wire": FullWire})
OPENAI = Rows({**ROW, "id": "openai", "name": "Not OpenAI"})
RAISES = Raises()
NO_ADAPTERS = NoAdapters()
SYNC_ADAPTER = Adapters(ROW)
LOGIN = Logins(ROW)
LOGIN_FOR_GROQ = Logins(provider_id="groq")
LOGIN_FOR_NOBODY = Logins(provider_id="nobody")


def ep(attribute: str, name: str = "ext") -> metadata.EntryPoint:
    return metadata.EntryPoint(name, f"{__name__}:{attribute}", GROUP)


def problem_of(attribute: str, config: ExtensionsConfig | None = None) -> str:
    exts = load(config, [ep(attribute)])
    [report] = exts.reports
    assert report.status == "failed" and report.problem is not None
    assert report.package == "tests" and report.entry_point == "ext"
    assert "tiny" not in {p.id for p in exts.providers}  # nothing of a failed extension is registered
    return report.problem


def test_a_good_extension_is_registered_after_the_builtins() -> None:
    exts = load(None, [ep("GOOD")])
    builtins = load_builtin_providers()
    assert exts.providers[: len(builtins)] == builtins
    tiny = exts.providers[-1]
    assert (tiny.id, tiny.origin, tiny.base_url, [m.id for m in tiny.models]) == (
        "tiny",
        "extension",
        "http://127.0.0.1:9/v1",
        ["t1"],
    )
    assert tiny.models[0].context_window == 1000
    [report] = exts.reports
    assert (report.status, report.providers, exts.owner("tiny")) == ("active", ("tiny",), report)
    assert "loaded: providers tiny" in report.line()


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("A_CLASS", "names a class; it must name an instance"),
        ("RAISES", "providers() raised RuntimeError: boom"),
        ("NO_ADAPTERS", "the extension object (NoAdapters) lacks adapters of the contract"),
        ("HALF_WIRE", "wire API 'half-wire' (NoStreamDecoder) lacks stream_decoder of the contract"),
        ("MISNAMED_WIRE", "wire API 'other-name' says its name is 'openai-completions'"),
        ("BAD_ROW", "a provider row is invalid: Expected `str`, got `int` - at `providers()[0].baseUrl`"),
        ("UNKNOWN_API", "provider 'tiny': api 'carrier-pigeon' is no wire API (known: "),
        ("SYNC_ADAPTER", "adapter 'sync': resolve must be async"),
        ("NO_SUCH_OBJECT", "import failed: AttributeError"),
        ("LOGIN_FOR_GROQ", "provider id 'groq' is built in; an extension replaces a built-in only when"),
        ("LOGIN_FOR_NOBODY", "login 'nobody' is for no provider; list the provider in providers()"),
    ],
)
def test_contract_breaches_are_reported(attribute: str, expected: str) -> None:
    assert expected in problem_of(attribute)


def test_a_failed_extension_leaves_nothing_behind() -> None:
    assert "telepathy" in problem_of("PARTIAL")
    assert load(None, [ep("PARTIAL")]).wire("partial-wire") is None


def test_an_import_failure_names_the_missing_module() -> None:
    exts = load(None, [metadata.EntryPoint("gone", "tests.no_such_extension_module:EXT", GROUP)])
    assert (
        exts.reports[0].problem
        == "import failed: ModuleNotFoundError: No module named 'tests.no_such_extension_module'"
    )


def test_a_builtin_id_needs_the_operators_opt_in() -> None:
    problem = problem_of("OPENAI")
    assert "provider id 'openai' is built in" in problem and '"allow_override": ["openai"]' in problem
    exts = load(ExtensionsConfig(allow_override=["openai"]), [ep("OPENAI")])
    [report] = exts.reports
    assert report.status == "active" and report.overrides == ("openai",)
    assert "replacing built-in openai" in report.line()
    replaced = [p for p in exts.providers if p.id == "openai"]
    assert [(p.name, p.origin) for p in replaced] == [("Not OpenAI", "extension")]


def test_two_extensions_never_share_a_name() -> None:
    exts = load(ExtensionsConfig(allow_override=["tiny"]), [ep("GOOD", "first"), ep("ALSO_TINY", "second")])
    first, second = exts.reports
    assert first.status == "active" and second.status == "failed"
    assert second.problem == "provider id 'tiny' is already registered by extension tests"


def test_disabled_by_config_is_not_even_imported() -> None:
    gone = metadata.EntryPoint("gone", "tests.no_such_extension_module:EXT", GROUP)
    exts = load(ExtensionsConfig(disabled=["gone"]), [gone])
    assert exts.reports[0].status == "disabled" and exts.reports[0].problem is None
    assert "disabled by config.json extensions.disabled" in exts.reports[0].line()


def test_a_login_is_listed_after_the_builtin_ones() -> None:
    exts = load(None, [ep("LOGIN")])
    assert exts.login_ids() == ["openai-codex", "anthropic", "github-copilot", "tiny"]
    flow = exts.flow("tiny")
    assert flow is not None and flow.label == "Tiny"


def test_every_builtin_part_keeps_its_contract() -> None:
    """The built-ins load lazily (start-up time), through the same checks; load each one here."""
    exts = load(None, [])
    for name in _TRANSLATING:
        assert exts.wire(name) is not None
    for name in {p.adapter for p in exts.providers if p.adapter}:
        exts.adapter(name)
    for pid in exts.login_ids():
        assert exts.flow(pid) is not None
