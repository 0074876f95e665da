"""``switchboard login``, ``logout`` and ``doctor``: storing credentials and explaining where they come from.

* ``login [PROVIDER]`` — without a provider, a numbered menu of every provider (subscriptions first, in
  the order of :func:`providers.oauth.login_ids`: the built-in logins, then the extensions', then
  API-key providers). An API key is read without echo
  from the terminal (or from standard input with ``--stdin``) and stored in ``auth.json`` as
  ``{"type": "api_key", "key": ...}``; a subscription runs its :class:`~providers.oauth.base.OAuthFlow`.
* ``logout [PROVIDER]`` — drops one stored entry, or all of them after a confirmation (``--yes``).
* ``doctor`` — for every provider: usable or not, where the credential comes from (never the key), and
  the concrete fix for each unusable one; ``--json`` for machines. A config file that cannot be used (an
  ``auth.json`` that does not parse) is reported first in the text output and, in ``--json``, under
  ``problems`` in every row (the output stays a list of provider rows); a ``!command`` that would be
  refused (see :mod:`providers.keyvalue`) makes its provider unusable, with the reason and the fix. The
  installed extensions (:mod:`providers.extensions`) are listed after the providers, each with its package
  and version; one that failed to load is a problem too. In ``--json`` a provider from an extension
  names it under ``extension``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from providers import extensions
from providers.authstore import AuthStore
from providers.credentials import Credentials
from providers.errors import ConfigError, SwitchboardError
from providers.fixes import describe_key_value, how_to_fix, mask_key, takes_api_key
from providers.keyvalue import Origin
from providers.models_json import command_origin
from providers.provider_env import scoped_env
from providers.registry import Provider, Registry

from .config import Paths

__all__ = ["MenuItem", "TerminalUI", "add_auth_commands", "choose", "diagnose", "mask_key", "print_extensions"]

#: Shown for a subscription whose flow module is not in this build (a present flow says its own label).
_SUBSCRIPTION_LABELS = {
    "openai-codex": "ChatGPT Plus/Pro (Codex)",
    "anthropic": "Claude Pro/Max",
    "github-copilot": "GitHub Copilot",
}


def add_auth_commands(sub: Any) -> None:
    """Register ``login``, ``logout`` and ``doctor`` on the ``switchboard`` sub-parsers."""
    login = sub.add_parser("login", help="store an API key or log in to a subscription")
    login.add_argument("provider", nargs="?", help="provider id; without it, choose from a list")
    login.add_argument("--stdin", action="store_true", help="read the API key from standard input (for scripts and CI)")
    login.add_argument(
        "--key",
        action="store_true",
        help="store an API key even for a provider that also has a subscription login (anthropic)",
    )
    login.set_defaults(func=_interruptible(_login))

    logout = sub.add_parser("logout", help="remove stored credentials")
    logout.add_argument("provider", nargs="?", help="provider id; without it, remove every stored credential")
    logout.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    logout.set_defaults(func=_interruptible(_logout))

    doctor = sub.add_parser("doctor", help="show which providers are usable and where their credentials come from")
    doctor.add_argument("--json", action="store_true", help="print a JSON list for machines")
    doctor.set_defaults(func=_doctor)


def _interruptible(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Ctrl-C at a prompt ends the command with a message instead of a traceback (exit 130)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except KeyboardInterrupt:
            print("\nCancelled.", file=sys.stderr)
            return 130

    return run


# --- the terminal ------------------------------------------------------------------------------------


class TerminalUI:
    """:class:`providers.oauth.base.LoginUI` on the process's terminal."""

    def say(self, text: str) -> None:
        print(text, flush=True)

    def ask(self, prompt: str, *, secret: bool = False) -> str:
        if secret:
            return getpass.getpass(prompt)
        return input(prompt)

    def open_url(self, url: str) -> None:
        print(f"Open this URL in a browser:\n\n  {url}\n", flush=True)
        # Without a display, webbrowser may pick a text browser that would take over this terminal.
        graphical = (
            sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        if not graphical or os.environ.get("SWITCHBOARD_NO_BROWSER"):
            return
        with contextlib.suppress(Exception):
            import webbrowser

            # Browsers launched from here may write to the terminal; keep them off it.
            with _quiet_fds():
                webbrowser.open(url)


@contextlib.contextmanager
def _quiet_fds() -> Any:
    saved: list[tuple[int, int]] = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                sys.stdout.flush() if fd == 1 else sys.stderr.flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


@dataclass(frozen=True, slots=True)
class MenuItem:
    #: What typing an id selects (a provider id).
    key: str
    label: str
    #: "subscription" or "api_key".
    kind: str
    note: str = ""


def choose(
    items: Sequence[MenuItem],
    *,
    title: str,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> MenuItem | None:
    """A numbered menu: the user types a number or an id; an empty line (or EOF) cancels (None)."""
    write(title)
    section = ""
    width = len(str(len(items)))
    for n, item in enumerate(items, 1):
        heading = "Subscriptions" if item.kind == "subscription" else "API keys"
        if heading != section:
            section = heading
            write(f"  {heading}:")
        note = f"  ({item.note})" if item.note else ""
        write(f"  {n:>{width}}. {item.label} [{item.key}]{note}")
    while True:
        try:
            answer = read("Number or id (Enter to cancel): ").strip()
        except EOFError:
            return None
        if not answer:
            return None
        if answer.isdigit():
            n = int(answer)
            if 1 <= n <= len(items):
                return items[n - 1]
            write(f"No entry {n}: type 1 to {len(items)}.")
            continue
        matches = [i for i in items if i.key == answer]
        if len(matches) == 1:
            return matches[0]
        if matches:
            kinds = {"subscription": "subscription", "api_key": "API key"}
            numbers = ", ".join(f"{items.index(m) + 1} for {m.label} ({kinds[m.kind]})" for m in matches)
            write(f"{answer!r} is listed more than once: type {numbers}.")
            continue
        close = difflib.get_close_matches(answer, [i.key for i in items], n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?" if close else ""
        write(f"No provider {answer!r}.{hint}")


# --- login -------------------------------------------------------------------------------------------


def _registry(paths: Paths) -> Registry:
    """Built-ins with models.json applied; a broken models.json must not stop a login."""
    from .runtime import build_registry

    try:
        return build_registry(paths)
    except SwitchboardError as exc:
        print(f"switchboard: warning: {exc.message}; listing built-in and extension providers only", file=sys.stderr)
        return Registry(extensions.active().providers)


def _flow(provider_id: str) -> Any:
    """The provider's OAuthFlow, or None when its module is absent (or broken) in this build."""
    from providers.oauth import flow_for

    try:
        return flow_for(provider_id)
    except Exception:
        return None


def _subscription_ids() -> list[str]:
    from providers.oauth import login_ids

    return login_ids()


def _menu(registry: Registry) -> list[MenuItem]:
    items: list[MenuItem] = []
    for pid in _subscription_ids():
        flow = _flow(pid)
        p = registry.get(pid)
        label = getattr(flow, "label", None) or _SUBSCRIPTION_LABELS.get(pid) or (p.name if p else pid)
        items.append(MenuItem(pid, label, "subscription", "" if flow else "not available in this build"))
    for p in registry:
        if takes_api_key(p):
            items.append(MenuItem(p.id, p.name, "api_key"))
    return items


def _login(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    registry = _registry(paths)
    store = AuthStore(paths.auth_json)
    try:
        store.read()  # before any prompt or browser flow: a login that cannot be stored is wasted
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.message}; nothing was written: fix the file, or move it aside "
            f"(mv {store.path} {store.path}.broken) and log in again"
        ) from exc
    subs = _subscription_ids()
    if args.provider is None:
        if args.stdin:
            raise ConfigError("--stdin needs a provider: switchboard login PROVIDER --stdin")
        item = choose(_menu(registry), title="Log in to which provider?")
        if item is None:
            print("Cancelled; nothing stored.")
            return 1
        if item.kind == "subscription":
            return _login_subscription(store, registry, item.key)
        return _login_key(store, registry, item.key, from_stdin=False)

    pid = args.provider
    p = registry.get(pid)
    if p is None and pid not in subs:
        known = list(dict.fromkeys([*subs, *registry.ids()]))
        close = difflib.get_close_matches(pid, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown provider {pid!r}{hint} ('switchboard login' lists them all)")
    key_ok = p is not None and takes_api_key(p)
    if args.stdin or args.key:
        if not key_ok:
            raise ConfigError(f"{pid!r} takes no API key; log in with 'switchboard login {pid}'")
        return _login_key(store, registry, pid, from_stdin=args.stdin)
    if pid in subs:
        if key_ok:
            assert p is not None
            flow = _flow(pid)
            label = getattr(flow, "label", None) or _SUBSCRIPTION_LABELS.get(pid) or f"{p.name} subscription"
            items = [MenuItem(pid, label, "subscription"), MenuItem(pid, f"{p.name} API key", "api_key")]
            item = choose(items, title=f"{p.name}: log in with which method?")
            if item is None:
                print("Cancelled; nothing stored.")
                return 1
            if item.kind == "api_key":
                return _login_key(store, registry, pid, from_stdin=False)
        return _login_subscription(store, registry, pid)
    return _login_key(store, registry, pid, from_stdin=False)


def _login_key(store: AuthStore, registry: Registry, pid: str, *, from_stdin: bool) -> int:
    p = registry.get(pid)
    name = p.name if p else pid
    if from_stdin:
        key = sys.stdin.read().strip()
    else:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"no terminal to ask for the key; pipe it instead: switchboard login {pid} --stdin < keyfile"
            )
        try:
            key = getpass.getpass(f"API key for {name} (input hidden): ").strip()
        except (EOFError, KeyboardInterrupt):
            print("\nCancelled; nothing stored.")
            return 1
    if not key:
        print("No key given; nothing stored.", file=sys.stderr)
        return 1
    if "\n" in key or "\r" in key:
        raise ConfigError("the key spans several lines; give exactly one key")
    replaced = store.get(pid) is not None
    store.set(pid, {"type": "api_key", "key": key})
    verb = "Replaced the stored credential" if replaced else "Stored an API key"
    print(f"{verb} for {name} ({pid}) in {store.path}: {describe_key_value(key, os.environ)}.")
    if p is not None:
        _note_missing_env(p)
    return 0


def _note_missing_env(p: Provider) -> None:
    missing = [n for n in p.url_env if not os.environ.get(n)]
    if missing:
        print(f'Note: {p.name} also needs {" and ".join(missing)} in the environment (or under "env" in auth.json).')


def _login_subscription(store: AuthStore, registry: Registry, pid: str) -> int:
    flow = _flow(pid)
    p = registry.get(pid)
    if flow is None:
        name = p.name if p else pid
        print(f"switchboard: the {name} subscription login is not available in this build", file=sys.stderr)
        if p is not None and takes_api_key(p):
            print(f"An API key works instead: switchboard login {pid} --key", file=sys.stderr)
        return 2
    try:
        entry = flow.login(TerminalUI())
    except (EOFError, KeyboardInterrupt):
        print("\nCancelled; nothing stored.")
        return 1
    except RuntimeError as exc:
        print(f"switchboard: {flow.label} login failed: {exc}", file=sys.stderr)
        return 1
    if not isinstance(entry, dict) or not entry.get("access"):
        print(f"switchboard: {flow.label} login returned no token; nothing stored", file=sys.stderr)
        return 1
    store.set(pid, {**entry, "type": "oauth"})
    expires = _iso(entry.get("expires"))
    until = f" (token valid until {expires}; refreshed automatically)" if expires else ""
    print(f"Logged in to {flow.label}{until}. Stored in {store.path}.")
    return 0


# --- logout ------------------------------------------------------------------------------------------


def _logout(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    store = AuthStore(paths.auth_json)
    stored = list(store.read())
    if args.provider is not None:
        pid = args.provider
        if not store.remove(pid):
            close = difflib.get_close_matches(pid, stored, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            print(f"switchboard: nothing stored for {pid!r} in {store.path}{hint}", file=sys.stderr)
            return 1
        print(f"Removed the stored credential for {pid}.")
        _note_env_still_set(paths, [pid])
        return 0
    if not stored:
        print(f"No stored credentials in {store.path}.")
        return 0
    if not args.yes:
        print(f"Stored credentials: {', '.join(stored)}")
        try:
            answer = input(f"Remove all {len(stored)} from {store.path}? [y/N] ").strip().lower()
        except EOFError:
            answer = ""
        if answer not in ("y", "yes"):
            print("Nothing removed.")
            return 1
    removed = store.update(lambda data: {k: v for k, v in data.items() if k not in stored})
    gone = [k for k in stored if k not in removed]
    print(f"Removed {len(gone)} stored credential{'s' if len(gone) != 1 else ''}: {', '.join(gone)}.")
    _note_env_still_set(paths, gone)
    return 0


def _note_env_still_set(paths: Paths, ids: Sequence[str]) -> None:
    try:
        registry = _registry(paths)
    except Exception:
        return
    for pid in ids:
        p = registry.get(pid)
        set_vars = [n for n in (p.env_vars if p else ()) if os.environ.get(n)]
        if set_vars:
            print(f"Note: {pid} still has a credential from the environment ({', '.join(set_vars)}).")


# --- doctor ------------------------------------------------------------------------------------------


def _iso(expires: Any) -> str | None:
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        return None
    try:
        when = dt.datetime.fromtimestamp(expires / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fix(p: Provider, paths: Paths, env: Mapping[str, str], raw: object) -> str:
    """What to do so that ``p`` becomes usable: the same text a request's 401 gives."""
    return how_to_fix(p, paths.auth_json, paths.models_json, env, raw)


def diagnose(paths: Paths, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per provider: ``{provider, name, usable, source, expires, fix, problems}``; never a key.
    ``problems`` lists the config files that could not be used (the same in every row)."""
    environ = os.environ if env is None else env
    registry = _registry(paths)
    store = AuthStore(paths.auth_json)
    try:
        auth, auth_origin = store.read_checked()
    except ConfigError:
        auth, auth_origin = {}, Origin(store.path, "it could not be read")
    creds = Credentials(store, models_json_path=paths.models_json, environ=environ)
    problems = [problem] if (problem := creds.auth_problem) is not None else []
    exts = extensions.active()
    problems += exts.problems()
    rows: list[dict[str, Any]] = []
    for p in registry:
        entry = auth.get(p.id) if isinstance(auth.get(p.id), dict) else None
        expires: str | None = None
        fix: str | None = None
        try:
            found = creds.source_of(p)
        except Exception as exc:
            found = None
            fix = f"cannot check: {exc.message if isinstance(exc, SwitchboardError) else type(exc).__name__}"
        source = _describe_source(found, p, entry, environ)
        usable = found is not None
        refusal = _command_refusal(found, p, entry, auth_origin, paths)
        if usable and refusal is not None:
            usable = False
            fix = f"its !command will not run: {refusal}"
        if found == "auth.json (oauth)" and entry is not None:
            expires = _iso(entry.get("expires"))
            raw = entry.get("expires")
            lapsed = isinstance(raw, int | float) and raw <= dt.datetime.now(dt.UTC).timestamp() * 1000
            if lapsed and (not entry.get("refresh") or _flow(p.id) is None):
                usable = False
                fix = f"the stored login expired at {expires}; run 'switchboard login {p.id}' again"
            elif lapsed:
                source += " (expired; refreshed on the next request)"
        if not usable and fix is None:
            fix = _fix(p, paths, environ, auth.get(p.id))
        rows.append(
            {
                "provider": p.id,
                "name": p.name,
                "usable": usable,
                "source": source if found is not None else None,
                "expires": expires,
                "fix": None if usable else fix,
                "problems": problems,
                "extension": _extension_of(exts, p),
            }
        )
    return rows


def _extension_of(exts: extensions.Extensions, p: Provider) -> dict[str, str] | None:
    owner = exts.owner(p.id) if p.origin == "extension" else None
    return {"package": owner.package, "version": owner.version} if owner is not None else None


def _command_refusal(
    found: str | None, p: Provider, entry: dict[str, Any] | None, auth_origin: Origin, paths: Paths
) -> str | None:
    """Why the ``!command`` the credential comes from would be refused, or None."""
    if found == "auth.json" and entry is not None and str(entry.get("key", "")).startswith("!"):
        return auth_origin.refusal
    if found == "models.json" and (p.config_api_key or "").startswith("!"):
        return command_origin(paths.models_json).refusal
    return None


def _describe_source(found: str | None, p: Provider, entry: dict[str, Any] | None, env: Mapping[str, str]) -> str:
    if found is None:
        return ""
    if found == "auth.json" and entry is not None and isinstance(entry.get("key"), str):
        return f"auth.json API key ({describe_key_value(entry['key'], {**env, **scoped_env(entry)})})"
    if found == "auth.json (oauth)":
        return "auth.json OAuth login"
    if found == "models.json" and p.config_api_key is not None:
        return f"models.json apiKey ({describe_key_value(p.config_api_key, env)})"
    return found


def _doctor(args: argparse.Namespace) -> int:
    rows = diagnose(Paths.from_env())
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for problem in rows[0]["problems"] if rows else ():
        print(f"problem: {problem}\n")
    width = max([len("PROVIDER"), *(len(r["provider"]) for r in rows)])
    print(f"{'PROVIDER':<{width}}  {'STATUS':<7}  SOURCE / FIX")
    for r in rows:
        if r["usable"]:
            detail = r["source"] + (f", expires {r['expires']}" if r["expires"] else "")
            print(f"{r['provider']:<{width}}  {'ok':<7}  {detail}")
        else:
            print(f"{r['provider']:<{width}}  {'missing':<7}  fix: {r['fix']}")
    usable = sum(1 for r in rows if r["usable"])
    print(f"\n{usable} of {len(rows)} providers usable.")
    print_extensions(extensions.active())
    return 0


def print_extensions(exts: extensions.Extensions) -> None:
    """The extensions found, one line each (``switchboard doctor`` and ``switchboard providers``)."""
    if not exts.reports:
        print(f"\nNo extensions installed (entry-point group {extensions.GROUP!r}).")
        return
    print("\nExtensions:")
    for report in exts.reports:
        mark = {"active": "ok", "failed": "FAILED", "disabled": "off"}[report.status]
        print(f"  {mark:<6}  {report.line()}")
