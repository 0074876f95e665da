"""Each provider's credential status for the dashboard: what ``switchboard doctor`` reports, read from
the running :class:`Runtime`'s registry and credential resolver.

Unlike ``doctor`` (a fresh process reading every file), this runs inside the server, so it uses what
the Runtime already holds: :meth:`Credentials.source_of` judges each source without running a
``!command`` (nor any other subprocess), and the fix is the same text a request's 401 carries.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from providers.errors import SwitchboardError
from providers.fixes import how_to_fix

from ..asgi import hide_paths

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["provider_status"]


def provider_status(rt: Runtime) -> dict[str, Any]:
    """``{"problems": [...], "data": [{provider, name, usable, source, in_use, fix}, ...]}``; never a key."""
    creds = rt.credentials
    rows: list[dict[str, Any]] = []
    for p in rt.registry:
        fix: str | None = None
        try:
            source = creds.source_of(p)
        except SwitchboardError as exc:
            source, fix = None, f"cannot check: {exc.message}"
        usable = source is not None
        if not usable and fix is None:
            fix = how_to_fix(p, creds.auth_path, rt.paths.models_json, os.environ, None)
        rows.append(
            {
                "provider": p.id,
                "name": p.name,
                "usable": usable,
                "source": source,
                # Resolved by a request already (its credential is cached and in use).
                "in_use": creds.cached(p.id) is not None,
                "fix": None if fix is None else hide_paths(fix),
            }
        )
    # Usable providers first, then by id: the ones people rely on are at the top.
    rows.sort(key=lambda r: (not r["usable"], r["provider"]))
    return {"problems": [hide_paths(p) for p in rt.problems()], "data": rows}
