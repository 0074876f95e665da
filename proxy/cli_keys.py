"""``switchboard keys ...`` and ``switchboard usage``: virtual keys and the usage ledger from a shell.

Two modes, the same commands and output:

- **remote** (``--url URL`` or ``SWITCHBOARD_URL``): calls the admin API of a running gateway with the
  master key from ``SWITCHBOARD_MASTER_KEY``;
- **local** (otherwise): works on the store itself (``database_url`` in config.json or
  ``SWITCHBOARD_DATABASE_URL``; SQLite under ``SWITCHBOARD_HOME`` by default), and announces each change
  on Redis when ``redis_url`` / ``SWITCHBOARD_REDIS_URL`` is set, so running replicas drop the key at once.

Nothing printed ever includes a key's hash; its plaintext only right after ``create`` and ``rotate``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from providers.errors import InvalidRequest

from .cli_keys_backend import Backend, backend_for

__all__ = ["add_gateway_commands"]

_SHOWN_ONCE = "This key is shown only now and will not be shown again: store it somewhere safe."


def add_gateway_commands(sub: Any) -> None:
    """Add ``keys`` and ``usage`` to the ``switchboard`` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=None,
        help="a running gateway's base URL (default: $SWITCHBOARD_URL; unset: the local store); "
        "the master key is read from $SWITCHBOARD_MASTER_KEY",
    )
    common.add_argument("--json", action="store_true", help="print JSON as the admin API answers")

    keys = sub.add_parser("keys", help="create and manage virtual keys (team gateway)")
    ksub = keys.add_subparsers(required=True, metavar="ACTION")

    create = ksub.add_parser("create", parents=[common], help="create a key; prints it once")
    create.add_argument("name", nargs="?", default="", help="a name people recognise the key by")
    _limit_options(create, update=False)
    create.set_defaults(func=_create)

    ksub.add_parser("list", parents=[common], help="list keys (never their secrets)").set_defaults(func=_list)
    show = ksub.add_parser("show", parents=[common], help="show one key")
    show.add_argument("id")
    show.set_defaults(func=_show)

    update = ksub.add_parser("update", parents=[common], help="change a key's name, models or limits")
    update.add_argument("id")
    update.add_argument("--name")
    _limit_options(update, update=True)
    update.set_defaults(func=_update)

    for action, disabled in (("disable", True), ("enable", False)):
        p = ksub.add_parser(action, parents=[common], help=f"{action} a key (takes effect at once)")
        p.add_argument("id")
        p.set_defaults(func=_set_disabled, disabled=disabled)

    rotate = ksub.add_parser("rotate", parents=[common], help="give a key a new secret; the old one stops working")
    rotate.add_argument("id")
    rotate.set_defaults(func=_rotate)
    remove = ksub.add_parser("delete", parents=[common], help="delete a key (its usage records stay)")
    remove.add_argument("id")
    remove.set_defaults(func=_delete)

    usage = sub.add_parser("usage", parents=[common], help="requests, tokens and cost from the usage ledger")
    usage.add_argument("--by", default="key", choices=["key", "model", "provider", "day"], help="group by")
    usage.add_argument("--since", default="30d", help="7d, 24h, YYYY-MM-DD or an ISO datetime (default 30d)")
    usage.add_argument("--key", help="only this key id")
    usage.set_defaults(func=_usage)


def _limit_options(p: argparse.ArgumentParser, *, update: bool) -> None:
    p.add_argument(
        "--models",
        nargs="+",
        action="extend",
        metavar="PATTERN",
        help="allowed models: provider/*, provider/model or an alias (default: every model)",
    )
    p.add_argument("--budget", type=float, metavar="USD", help="spend limit in US dollars")
    p.add_argument("--period", choices=["day", "week", "month"], help="budget period (default: lifetime)")
    p.add_argument("--rpm", type=int, metavar="N", help="requests per minute")
    p.add_argument("--tpm", type=int, metavar="N", help="tokens per minute")
    p.add_argument("--parallel", type=int, metavar="N", help="requests in flight at once")
    p.add_argument("--expires", metavar="WHEN", help="30m, 2h, 7d, YYYY-MM-DD (midnight UTC) or an ISO datetime")
    p.add_argument("--metadata", metavar="JSON", help='free-form JSON object, e.g. \'{"team": "ml"}\'')
    if update:
        p.add_argument("--all-models", action="store_true", help="allow every model")
        for name in ("budget", "period", "rpm", "tpm", "parallel", "expires"):
            p.add_argument(f"--no-{name}", action="store_true", help=f"remove the {name}")


def _changes(args: argparse.Namespace, *, update: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("budget", "period", "rpm", "tpm", "parallel", "expires"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
        if update and getattr(args, f"no_{name}"):
            if value is not None:
                raise InvalidRequest(f"--{name} and --no-{name} contradict each other; give one")
            body[name] = None
    if args.models:
        body["models"] = args.models
    if update and args.all_models:
        if args.models:
            raise InvalidRequest("--models and --all-models contradict each other; give one")
        body["models"] = []
    if args.metadata is not None:
        try:
            metadata = json.loads(args.metadata)
        except ValueError:
            raise InvalidRequest('--metadata must be a JSON object, e.g. \'{"team": "ml"}\'') from None
        if not isinstance(metadata, dict):
            raise InvalidRequest('--metadata must be a JSON object, e.g. \'{"team": "ml"}\'')
        body["metadata"] = metadata
    return body


def _create(args: argparse.Namespace) -> int:
    body = _changes(args, update=False)
    if args.name:
        body["name"] = args.name
    created = _backend(args).create(body)
    return _print_secret(args, created, "Created")


def _list(args: argparse.Namespace) -> int:
    views = _backend(args).list()
    if args.json:
        return _json({"object": "list", "data": views})
    if not views:
        print("No keys yet; create one with 'switchboard keys create NAME'.", file=sys.stderr)
        return 0
    rows = [("ID", "NAME", "KEY", "MODELS", "BUDGET", "SPEND", "RPM", "TPM", "PARALLEL", "EXPIRES", "STATUS")]
    rows += [
        (
            v["id"],
            v["name"],
            v["key_prefix"],
            ", ".join(v["models"]) or "all",
            _budget(v),
            f"${v['spend']:.4f}",
            _num(v["rpm"]),
            _num(v["tpm"]),
            _num(v["parallel"]),
            v["expires_at"] or "never",
            _status(v),
        )
        for v in views
    ]
    _table(rows)
    return 0


def _show(args: argparse.Namespace) -> int:
    return _print_view(args, _backend(args).get(args.id))


def _update(args: argparse.Namespace) -> int:
    body = _changes(args, update=True)
    if args.name is not None:
        body["name"] = args.name
    if not body:
        raise InvalidRequest("nothing to change; give an option such as --budget, --rpm or --models (see --help)")
    return _print_view(args, _backend(args).update(args.id, body))


def _set_disabled(args: argparse.Namespace) -> int:
    return _print_view(args, _backend(args).update(args.id, {"disabled": args.disabled}))


def _rotate(args: argparse.Namespace) -> int:
    return _print_secret(args, _backend(args).rotate(args.id), "Rotated")


def _delete(args: argparse.Namespace) -> int:
    _backend(args).delete(args.id)
    if args.json:
        return _json({"id": args.id, "deleted": True})
    print(f"Deleted key {args.id}.")
    return 0


def _usage(args: argparse.Namespace) -> int:
    report = _backend(args).usage(args.by, args.since, args.key)
    if args.json:
        return _json(report)
    data: list[dict[str, Any]] = report["data"]
    header = ("GROUP", "REQUESTS", "INPUT", "OUTPUT", "CACHED", "CACHE WRITE", "REASONING", "COST USD")
    counts = ("requests", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
    rows = [header] + [(str(r["group"]), *(f"{r[c]:,}" for c in counts), f"{r['cost']:.6f}") for r in data]
    totals = [sum(r[c] for r in data) for c in counts]
    rows.append(("TOTAL", *(f"{t:,}" for t in totals), f"{sum(r['cost'] for r in data):.6f}"))
    print(f"Usage by {report['group_by']} since {report['since']}:")
    _table(rows, right_from=1)
    return 0


def _backend(args: argparse.Namespace) -> Backend:
    return backend_for(args.url or os.environ.get("SWITCHBOARD_URL") or None)


def _print_secret(args: argparse.Namespace, view: dict[str, Any], what: str) -> int:
    if args.json:
        return _json(view)
    # The key alone on stdout, so `KEY=$(switchboard keys create ci --expires 2h)` captures just it.
    print(f"{what} key {view['id']}{' (' + view['name'] + ')' if view['name'] else ''}.", file=sys.stderr)
    print(view["key"])
    print(_SHOWN_ONCE, file=sys.stderr)
    return 0


def _print_view(args: argparse.Namespace, view: dict[str, Any]) -> int:
    if args.json:
        return _json(view)
    lines = [
        ("id", view["id"]),
        ("name", view["name"]),
        ("key", view["key_prefix"]),
        ("status", _status(view)),
        ("models", ", ".join(view["models"]) or "all"),
        ("budget", _budget(view)),
        ("spend", f"${view['spend']:.6f}"),
        ("budget resets", view["budget_resets_at"] or "-"),
        ("rpm", _num(view["rpm"])),
        ("tpm", _num(view["tpm"])),
        ("parallel", _num(view["parallel"])),
        ("expires", view["expires_at"] or "never"),
        ("metadata", json.dumps(view["metadata"]) if view["metadata"] else "-"),
        ("created", view["created_at"] or "-"),
        ("last used", view["last_used_at"] or "never"),
    ]
    for label, value in lines:
        print(f"{label + ':':<15}{value}")
    return 0


def _status(view: dict[str, Any]) -> str:
    return "disabled" if view["disabled"] else "expired" if view.get("expired") else "active"


def _budget(view: dict[str, Any]) -> str:
    if view["budget"] is None:
        return "-"
    return f"${view['budget']:g}" + (f"/{view['period']}" if view["period"] else "")


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _json(data: Any) -> int:
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def _table(rows: Sequence[tuple[str, ...]], right_from: int | None = None) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [
            c.rjust(w) if right_from is not None and i >= right_from else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
