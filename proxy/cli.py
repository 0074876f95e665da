"""The ``switchboard`` command: ``serve``, ``models`` and ``providers`` (login, doctor and the gateway's
commands live in :mod:`proxy.cli_auth` and :mod:`proxy.cli_keys`).

Every command sees the installed extensions (:mod:`providers.extensions`) under ``config.json``'s
``extensions`` settings, so ``login``, ``doctor`` and ``models`` list what ``serve`` would serve.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from providers import extensions
from providers.errors import ConfigError, SwitchboardError
from providers.registry import Registry

from .cli_auth import add_auth_commands, print_extensions
from .cli_keys import add_gateway_commands
from .config import Paths, ServerConfig, load_server_config

__all__ = ["main"]

log = logging.getLogger("switchboard")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _activate_extensions()
        code: int = args.func(args)
    except SwitchboardError as exc:
        print(f"switchboard: {exc.message}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard", description="An OpenAI-compatible routing proxy.")
    p.add_argument(
        "--log-level",
        default=os.environ.get("SWITCHBOARD_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, or 'host' in config.json)")
    serve.add_argument("--port", type=int, help="port (default 8642, or 'port' in config.json)")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="PROVIDER=KEY",
        help="a key for one provider, before auth.json and env vars; repeatable. A key given inline is "
        "visible to every local user in the process list (/proc/PID/cmdline): prefer PROVIDER=@FILE "
        "(read from a file only you can read) or PROVIDER=- (one line from stdin)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow binding a non-loopback address although clients are not authenticated: anyone "
        "who can reach the port spends your provider credits",
    )
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="list the models of every provider that has credentials")
    models.add_argument("--provider", help="only this provider")
    models.add_argument("--json", action="store_true", help="print JSON like GET /v1/models")
    models.set_defaults(func=_models)

    providers = sub.add_parser("providers", help="list every provider and the installed extensions")
    providers.add_argument("--json", action="store_true", help="print JSON for machines")
    providers.set_defaults(func=_providers)
    add_auth_commands(sub)
    add_gateway_commands(sub)
    return p


def _activate_extensions() -> None:
    """Load the installed extensions under config.json's ``extensions`` settings, once, before any
    command builds a registry."""
    try:
        config = load_server_config(Paths.from_env().config_json)
    except ConfigError:
        return  # a command that needs config.json reports it; the others run with the default settings
    extensions.activate(config.extensions)


def _read_key_sources(pairs: Sequence[str]) -> list[str]:
    """``PROVIDER=@FILE`` and ``PROVIDER=-`` (stdin, one line) replaced by ``PROVIDER=KEY``."""
    out: list[str] = []
    stdin_used = False
    for pair in pairs:
        provider, sep, value = pair.partition("=")
        if sep and value == "-":
            if stdin_used:
                raise ConfigError("--api-key PROVIDER=- reads stdin, which can give one key only; use @FILE for others")
            stdin_used = True
            # At a terminal, ask without echo; from a pipe, read one line.
            value = (getpass.getpass(f"{provider} API key: ") if sys.stdin.isatty() else sys.stdin.readline()).strip()
            if not value:
                raise ConfigError(f"--api-key {provider}=- read an empty line from stdin; pipe the key in")
        elif sep and value.startswith("@"):
            value = _read_key_file(provider, Path(value[1:]).expanduser())
        out.append(f"{provider}{sep}{value}")
    return out


def _read_key_file(provider: str, path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--api-key {provider}=@{path}: cannot read the key file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--api-key {provider}=@{path}: the key file is not UTF-8 text") from exc
    if mode & 0o077:
        raise ConfigError(
            f"--api-key {provider}=@{path}: the key file can be read by other users; run 'chmod 600 {path}'"
        )
    key = text.strip()
    if not key:
        raise ConfigError(f"--api-key {provider}=@{path}: the key file is empty")
    return key


def _parse_api_keys(pairs: Sequence[str], registry: Registry) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        provider, sep, key = pair.partition("=")
        # Never echo the argument: without "=" it may well be the bare key itself.
        if not sep:
            raise ConfigError("--api-key expects PROVIDER=KEY, e.g. --api-key openai=sk-...; the value has no '='")
        if not provider or not key:
            what = f"no key for {provider!r}" if provider else "no provider before the '='"
            raise ConfigError(f"--api-key expects PROVIDER=KEY, e.g. --api-key openai=sk-...; got {what}")
        if registry.get(provider) is None:
            close = registry.close_provider_ids(provider)
            hint = f"; did you mean {close[0]!r}?" if close else "; 'switchboard models' lists providers"
            raise ConfigError(f"--api-key names unknown provider {provider!r}{hint}")
        out[provider] = key
    return out


def _serve(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from .app import create_app
    from .guard import is_loopback
    from .runtime import build_registry
    from .server import build_server

    paths = Paths.from_env()
    config = load_server_config(paths.config_json)
    host = args.host or config.host
    port = args.port if args.port is not None else config.port
    insecure = args.insecure_no_auth or config.insecure_no_auth
    gateway = bool(config.master_key or os.environ.get("SWITCHBOARD_MASTER_KEY"))
    if not is_loopback(host) and not insecure and not gateway:
        raise ConfigError(
            f"refusing to serve on {host}: no master key is set, so clients are not authenticated and anyone "
            "who can reach it would spend your provider credits. Set SWITCHBOARD_MASTER_KEY (or master_key in "
            "config.json) to require virtual keys, bind 127.0.0.1, or pass --insecure-no-auth if the network "
            "itself is trusted"
        )
    cli_keys = _parse_api_keys(_read_key_sources(args.api_key), build_registry(paths)) if args.api_key else {}
    app = create_app(paths, config, cli_keys)
    runtime = app.state.runtime
    usable = [p.id for p in runtime.registry if runtime.credentials.available(p)]
    server = build_server(app, config, host, port)
    if insecure and not gateway:
        log.warning(
            "--insecure-no-auth: clients are not authenticated; anyone who can reach %s:%d spends your "
            "provider credits",
            host,
            port,
        )
    loaded = [f"{r.package} {r.version}" for r in extensions.active().reports if r.status == "active"]
    log.info(
        "switchboard starting on http://%s:%d (home %s; providers with credentials: %s; extensions: %s; "
        "set up in %.0f ms)",
        host,
        port,
        paths.home,
        ", ".join(usable) or "none",
        ", ".join(loaded) or "none",
        (time.perf_counter() - t0) * 1000,
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        server.handle_exit(signum, frame)

    # A signal before uvicorn installs its handlers still stops the server (and a second one cuts the
    # shutdown short). uvicorn re-raises the signals it caught at these handlers once it has stopped;
    # they then find the server stopped and do nothing, so the process exits 0 instead of dying with
    # KeyboardInterrupt or "killed by SIGTERM".
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    server.run()
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import list_models
    from .runtime import Runtime

    paths = Paths.from_env()
    rt = Runtime(paths, load_server_config(paths.config_json) or ServerConfig())
    if args.provider and rt.registry.get(args.provider) is None:
        raise ConfigError(f"unknown provider {args.provider!r}; known: {', '.join(rt.registry.ids())}")
    entries = list_models(rt, args.provider)
    if args.json:
        print(json.dumps({"object": "list", "data": entries}, indent=2))
        return 0
    rows = [("MODEL", "CONTEXT", "MAX OUT", "IN $/M", "OUT $/M", "REASONING", "IMAGES")]
    for e in entries:
        if "alias_of" in e:
            rows.append((f"{e['id']} -> {e['alias_of']}", "", "", "", "", "", ""))
            continue
        rows.append(
            (
                e["id"],
                f"{e['context_window']:,}",
                f"{e['max_tokens']:,}",
                f"{e['pricing']['input']:g}",
                f"{e['pricing']['output']:g}",
                "yes" if e["reasoning"] else "",
                "yes" if "image" in e["input"] else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    missing = [
        p for p in rt.registry if not rt.credentials.available(p) and (args.provider is None or p.id == args.provider)
    ]
    if missing:
        print(f"\n{len(entries)} models. Providers without credentials:", file=sys.stderr)
        for p in missing:
            how = " or ".join(p.env_vars) or p.login_hint
            if p.url_env:
                how += f" (and {' and '.join(p.url_env)})"
            print(f"  {p.id:<24} {how}", file=sys.stderr)
    return 0


def _providers(args: argparse.Namespace) -> int:
    """Every provider (where it comes from, whether it has a credential) and every extension found."""
    from providers.authstore import AuthStore
    from providers.credentials import Credentials

    from .runtime import build_registry

    paths = Paths.from_env()
    exts = extensions.active()
    registry = build_registry(paths)
    creds = Credentials(AuthStore(paths.auth_json), models_json_path=paths.models_json)
    rows = []
    for p in registry:
        owner = exts.owner(p.id) if p.origin == "extension" else None
        origin = f"{owner.package} {owner.version}" if owner is not None else p.origin
        rows.append({"id": p.id, "name": p.name, "api": p.api, "origin": origin, "credential": creds.source_of(p)})
    if args.json:
        print(json.dumps({"providers": rows, "extensions": [r.as_json() for r in exts.reports]}, indent=2))
        return 0
    table = [("PROVIDER", "API", "FROM", "CREDENTIAL")]
    table += [(r["id"], r["api"], r["origin"], r["credential"] or "-") for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(3)]
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t[:3], widths, strict=True)) + "  " + t[3])
    print(f"\n{len(rows)} providers.")
    print_extensions(exts)
    return 0
