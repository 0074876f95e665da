"""The set of registered extensions (:mod:`providers.extensions`): their providers, and their wire APIs,
cloud adapters and logins by name, each checked against its contract.

:meth:`Extensions._register` is the one path: the built-ins (:mod:`providers.builtins`) go through it
first, then each installed extension. An extension is added whole or not at all.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import msgspec

from .cloud.base import CloudAdapter
from .extension_contract import ExtensionReport, ExtensionsConfig, ProviderExtension
from .oauth.base import OAuthFlow
from .registry import API_NAMES, Provider, providers_from_rows
from .wire.base import WireAPI

__all__ = ["BUILTIN_OWNER", "ExtensionFailed", "Extensions"]

#: The owner of the built-in parts (parentheses: no distribution can be called that).
BUILTIN_OWNER = "(built-in)"
_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")


class ExtensionFailed(Exception):
    """One extension breaks the contract; the message says what, for the report."""


@dataclass(slots=True)
class _Part:
    """A name an extension contributes and the callable that gives it (its object once loaded)."""

    owner: str
    factory: Callable[[], Any]
    loaded: Any = None


@dataclass(slots=True)
class Extensions:
    """Everything registered in this process: the built-ins first, then each active extension."""

    config: ExtensionsConfig = field(default_factory=ExtensionsConfig)
    reports: list[ExtensionReport] = field(default_factory=list)
    _providers: dict[str, Provider] = field(default_factory=dict)
    _wires: dict[str, _Part] = field(default_factory=dict)
    _adapters: dict[str, _Part] = field(default_factory=dict)
    _logins: dict[str, _Part] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def providers(self) -> tuple[Provider, ...]:
        return tuple(self._providers.values())

    def wire(self, api: str) -> WireAPI | None:
        """The wire API called ``api``, loaded on first use; None when no module speaks it."""
        part = self._wires.get(api)
        if part is None:
            return None
        wire: WireAPI | None = part.loaded
        return wire if wire is not None else self._load(part, api, _WIRE_CONTRACT)

    def adapter(self, name: str) -> CloudAdapter:
        """The cloud adapter called ``name`` (a provider row's ``adapter``); KeyError when none is."""
        part = self._adapters[name]
        adapter: CloudAdapter = part.loaded if part.loaded is not None else self._load(part, name, _ADAPTER_CONTRACT)
        return adapter

    def flow(self, provider_id: str) -> OAuthFlow | None:
        """The provider's login flow; None when it has none or its module is absent from this build."""
        part = self._logins.get(provider_id)
        if part is None:
            return None
        if part.loaded is None:
            try:
                return self._load(part, provider_id, _LOGIN_CONTRACT)  # type: ignore[no-any-return]
            except ModuleNotFoundError:
                return None
        flow: OAuthFlow = part.loaded
        return flow

    def login_ids(self) -> list[str]:
        """Provider ids with a login, the built-ins' order first."""
        return list(self._logins)

    def api_names(self) -> tuple[str, ...]:
        """Every wire API a provider or model may declare."""
        return tuple(dict.fromkeys([*API_NAMES, *self._wires]))

    def owner(self, provider_id: str) -> ExtensionReport | None:
        """The extension a provider comes from; None for a built-in one."""
        return next((r for r in self.reports if r.status == "active" and provider_id in r.providers), None)

    def problems(self) -> list[str]:
        return [r.line() for r in self.reports if r.status == "failed"]

    def _load(self, part: _Part, name: str, contract: _Contract) -> Any:
        with self._lock:
            if part.loaded is None:
                obj = part.factory()
                problem = contract.check(obj, name)
                if problem is not None:
                    raise ExtensionFailed(problem)
                part.loaded = obj
            return part.loaded

    def _register(self, obj: object, report: ExtensionReport, *, eager: bool) -> ExtensionReport:
        """Add the parts of ``obj``, all or nothing: ``report`` with what it contributes. Raises
        :class:`ExtensionFailed` saying what is wrong.

        ``eager``: create and check every wire API, adapter and login now, so that a broken one is reported
        at start (an installed extension); the built-ins load theirs on first use (start-up time).
        """
        problem = _EXTENSION_CONTRACT.check(obj, "")
        if problem is not None or isinstance(obj, type):
            raise ExtensionFailed(problem or "the entry point names a class; it must name an instance of it")
        ext = cast(ProviderExtension, obj)
        owner = report.package
        wires = self._stage(owner, "wire API", "wire_apis()", _hook(ext.wire_apis), _WIRE_CONTRACT, eager)
        adapters = self._stage(owner, "adapter", "adapters()", _hook(ext.adapters), _ADAPTER_CONTRACT, eager)
        logins = self._stage(owner, "login", "logins()", _hook(ext.logins), _LOGIN_CONTRACT, eager)
        provided = self._rows(
            _hook(ext.providers), owner, {*API_NAMES, *self._wires, *wires}, {*self._adapters, *adapters}
        )
        ids = {p.id for p in provided}
        overrides = self._claim(owner, [("provider id", p.id, self._providers) for p in provided])
        overrides += self._claim(owner, [("wire API", name, self._wires) for name in wires])
        overrides += self._claim(owner, [("adapter", name, self._adapters) for name in adapters])
        overrides += self._claim(owner, [("login", name, self._logins) for name in logins])
        for pid in logins:
            if pid not in ids and pid not in self._providers:
                raise ExtensionFailed(f"login {pid!r} is for no provider; list the provider in providers()")
            if pid not in ids:  # a login for a provider someone else registered is a change to that provider
                overrides += self._claim(owner, [("provider id", pid, self._providers)])
        for p in provided:
            self._providers[p.id] = p
        self._wires.update(wires)
        self._adapters.update(adapters)
        self._logins.update(logins)
        return replace(
            report,
            providers=tuple(p.id for p in provided),
            wire_apis=tuple(wires),
            adapters=tuple(adapters),
            logins=tuple(logins),
            overrides=tuple(dict.fromkeys(overrides)),
        )

    @staticmethod
    def _stage(owner: str, kind: str, hook: str, table: object, contract: _Contract, eager: bool) -> dict[str, _Part]:
        if not isinstance(table, Mapping):
            raise ExtensionFailed(f"{hook} returned {type(table).__name__}, not a mapping of name → callable")
        parts: dict[str, _Part] = {}
        for name, factory in table.items():
            if not isinstance(name, str) or not _ID.fullmatch(name) or not callable(factory):
                raise ExtensionFailed(f"{hook} entry {name!r}: expected a lower-case name → a callable")
            part = _Part(owner, factory)
            if eager:
                try:
                    part.loaded = factory()
                except Exception as exc:
                    raise ExtensionFailed(f"{kind} {name!r} raised {type(exc).__name__}: {exc}") from exc
                if (why := contract.check(part.loaded, name)) is not None:
                    raise ExtensionFailed(why)
            parts[name] = part
        return parts

    @staticmethod
    def _rows(rows: object, owner: str, apis: set[str], adapters: set[str]) -> tuple[Provider, ...]:
        if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
            raise ExtensionFailed(f"providers() returned {type(rows).__name__}, not a list of provider rows")
        try:
            provided = providers_from_rows(list(rows), "builtin" if owner == BUILTIN_OWNER else "extension")
        except msgspec.ValidationError as exc:
            raise ExtensionFailed(f"a provider row is invalid: {str(exc).replace('`$', '`providers()')}") from exc
        for p in provided:
            _check_row(p, apis, adapters)
        if len({p.id for p in provided}) != len(provided):
            raise ExtensionFailed("providers() lists a provider id twice")
        return provided

    def _claim(self, owner: str, names: list[tuple[str, str, Mapping[str, Any]]]) -> list[str]:
        """The built-in names among ``names`` this extension may replace; raises when one is taken."""
        replaced: list[str] = []
        for kind, name, table in names:
            current = table.get(name)
            if current is None:
                continue
            holder = current.owner if isinstance(current, _Part) else self._provider_owner(name)
            if holder != BUILTIN_OWNER:
                raise ExtensionFailed(f"{kind} {name!r} is already registered by extension {holder}")
            if name not in self.config.allow_override:
                raise ExtensionFailed(
                    f"{kind} {name!r} is built in; an extension replaces a built-in only when config.json "
                    f'lists it: "extensions": {{"allow_override": ["{name}"]}}'
                )
            replaced.append(name)
        return replaced

    def _provider_owner(self, provider_id: str) -> str:
        report = self.owner(provider_id)
        return report.package if report is not None else BUILTIN_OWNER


@dataclass(frozen=True, slots=True)
class _Contract:
    """The members a Protocol of the built-in contract requires, to say which one an object lacks."""

    what: str
    attributes: tuple[str, ...]
    methods: tuple[str, ...]
    coroutines: tuple[str, ...] = ()
    #: The attribute that must equal the name the object is registered under.
    named_by: str | None = None

    @classmethod
    def of(cls, what: str, proto: type, named_by: str | None = None) -> _Contract:
        methods = tuple(n for n, v in vars(proto).items() if not n.startswith("_") and callable(v))
        coroutines = tuple(n for n in methods if inspect.iscoroutinefunction(vars(proto)[n]))
        return cls(what, tuple(proto.__annotations__), methods, coroutines, named_by)

    def check(self, obj: object, name: str) -> str | None:
        """What ``obj``, registered as ``name`` (empty: it has no name), lacks; None when it keeps the contract."""
        what = f"{self.what} {name!r}" if name else self.what
        missing = [a for a in self.attributes if not hasattr(obj, a)]
        missing += [m for m in self.methods if not callable(getattr(obj, m, None))]
        if missing:
            return f"{what} ({type(obj).__name__}) lacks {', '.join(missing)} of the contract"
        not_async = [m for m in self.coroutines if not inspect.iscoroutinefunction(getattr(obj, m))]
        if not_async:
            return f"{what}: {', '.join(not_async)} must be async (coroutine functions)"
        if self.named_by is not None and getattr(obj, self.named_by) != name:
            return f"{what} says its {self.named_by} is {getattr(obj, self.named_by)!r}"
        return None


_EXTENSION_CONTRACT = _Contract.of("the extension object", ProviderExtension)
_WIRE_CONTRACT = _Contract.of("wire API", WireAPI, "name")
_ADAPTER_CONTRACT = _Contract.of("adapter", CloudAdapter)
_LOGIN_CONTRACT = _Contract.of("login", OAuthFlow, "provider_id")


def _hook(method: Callable[[], object]) -> object:
    """What one of the extension's hooks returns; an exception in it is the extension's failure."""
    try:
        return method()
    except Exception as exc:
        raise ExtensionFailed(f"{method.__name__}() raised {type(exc).__name__}: {exc}") from exc


def _check_row(p: Provider, apis: set[str], adapters: set[str]) -> None:
    where = f"provider {p.id!r}"
    if not _ID.fullmatch(p.id):
        raise ExtensionFailed(f"{where}: the id must be lower-case letters, digits, '.', '_' or '-'")
    for api, at in [(p.api, "api"), *((m.api, f"models[{m.id!r}].api") for m in p.models if m.api)]:
        if api not in apis:
            raise ExtensionFailed(f"{where}: {at} {api!r} is no wire API (known: {', '.join(sorted(apis))})")
    if p.adapter and p.adapter not in adapters:
        raise ExtensionFailed(f"{where}: adapter {p.adapter!r} is no cloud adapter (known: {', '.join(adapters)})")
    if (p.base_url or not p.adapter) and not p.base_url.startswith(("http://", "https://")):
        # An adapter may work the URL out itself (Azure's from its resource name): then it may be empty.
        raise ExtensionFailed(f"{where}: baseUrl {p.base_url!r} is not an http(s) URL")
