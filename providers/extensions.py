"""Extensions: provider packages installed beside Switchboard, found through the ``switchboard.providers``
entry-point group.

An installed distribution declares, in its ``pyproject.toml``::

    [project.entry-points."switchboard.providers"]
    acme = "switchboard_acme:EXTENSION"

and ``EXTENSION`` is an object satisfying :class:`ProviderExtension` (usually an
:class:`ExtensionBase` subclass instance). What it contributes goes through the contracts the built-ins
implement: provider rows (the fields of ``data/providers.json`` plus an inline ``models`` list, validated
by :func:`providers.registry.providers_from_rows`), wire APIs (:class:`providers.wire.base.WireAPI`),
cloud adapters (:class:`providers.cloud.base.CloudAdapter`) and logins
(:class:`providers.oauth.base.OAuthFlow`). The built-ins are one more extension,
:data:`providers.builtins.BUILTIN`, registered first by the same :meth:`Extensions._register`.

Discovery runs once per process (the first :func:`active`); :func:`activate` applies ``config.json``'s
``extensions`` section (:class:`ExtensionsConfig`). An extension that cannot be imported, raises while
registering, or breaks the contract (a row that fails validation, a wire API without ``stream_decoder``,
a name that is already taken) is disabled as a whole, logged once (package, version, entry point, what
failed) and listed by ``switchboard providers`` and ``switchboard doctor``; everything else keeps serving.
A built-in name (provider id, wire API, adapter, login) is replaced only when the operator lists it in
``extensions.allow_override``; two extensions never share a name (the first, by package name, keeps it).

The lookups :func:`providers.wire.translating_wire`, :func:`providers.cloud.adapter_for` and
:func:`providers.oauth.flow_for` read the active set. Settings are per process: the last
:func:`activate` wins (a process runs one configuration).
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .extension_contract import ExtensionBase, ExtensionReport, ExtensionsConfig, ProviderExtension
from .extension_set import BUILTIN_OWNER, ExtensionFailed, Extensions

__all__ = [
    "GROUP",
    "ExtensionBase",
    "ExtensionReport",
    "Extensions",
    "ExtensionsConfig",
    "ProviderExtension",
    "activate",
    "active",
    "load",
]

log = logging.getLogger("switchboard")

GROUP = "switchboard.providers"

_discovered: list[metadata.EntryPoint] | None = None
_active: Extensions | None = None
_state_lock = threading.Lock()


def _entry_points() -> list[metadata.EntryPoint]:
    """The group's entry points, read once per process, in a stable order (package, then name)."""
    global _discovered
    if _discovered is None:
        found = metadata.entry_points(group=GROUP)
        _discovered = sorted(found, key=lambda ep: (_package(ep)[0].lower(), ep.name))
    return _discovered


def _package(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return ep.module.split(".")[0], "?"
    return dist.name, dist.version


def load(
    config: ExtensionsConfig | None = None, entry_points: Sequence[metadata.EntryPoint] | None = None
) -> Extensions:
    """The built-ins, then every entry point of :data:`GROUP` that imports and keeps the contract."""
    from .builtins import BUILTIN

    config = config or ExtensionsConfig()
    exts = Extensions(config)
    exts._register(BUILTIN, ExtensionReport("", "", BUILTIN_OWNER, "", "active"), eager=False)
    disabled = {_normalize(d) for d in config.disabled}
    for ep in _entry_points() if entry_points is None else entry_points:
        package, version = _package(ep)
        base = ExtensionReport(ep.name, ep.value, package, version, "active")
        if _normalize(package) in disabled or _normalize(ep.name) in disabled:
            report = _with(base, status="disabled")
            log.info("%s", report.line())
        else:
            report = _load_one(exts, ep, base)
            # A failure is said once, loudly; what loaded is listed by `switchboard serve`'s start line,
            # `switchboard providers` and `doctor` (not by every CLI command).
            (log.error if report.status == "failed" else log.debug)("%s", report.line())
        exts.reports.append(report)
    return exts


def _load_one(exts: Extensions, ep: metadata.EntryPoint, base: ExtensionReport) -> ExtensionReport:
    try:
        obj = ep.load()
    except Exception as exc:
        return _with(base, status="failed", problem=f"import failed: {type(exc).__name__}: {exc}")
    try:
        return exts._register(obj, base, eager=True)
    except ExtensionFailed as exc:
        return _with(base, status="failed", problem=str(exc))
    except Exception as exc:  # a bug in the extension, not ours: report it and serve without it
        return _with(base, status="failed", problem=f"registering raised {type(exc).__name__}: {exc}")


def _with(report: ExtensionReport, **changes: Any) -> ExtensionReport:
    return replace(report, **changes)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def activate(config: ExtensionsConfig | None = None) -> Extensions:
    """Make the extensions loaded under ``config`` the process's (reloading only when it changed)."""
    global _active
    config = config or ExtensionsConfig()
    with _state_lock:
        if _active is None or _active.config != config:
            _active = load(config)
        return _active


def active() -> Extensions:
    """The process's extensions (loaded with the default settings if nothing activated them yet)."""
    current = _active
    return current if current is not None else activate(None)
