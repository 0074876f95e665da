"""config.json's ``oidc`` section: the OIDC issuers whose ID tokens the gateway takes as API keys.

::

    "oidc": {
      "issuers": [
        {
          "name": "github",
          "issuer": "https://token.actions.githubusercontent.com",
          "audience": "switchboard",
          "identity": "{repository}@{ref}",
          "rules": [
            {"match": {"repository_id": "123456789", "ref": "refs/heads/main"},
             "models": ["anthropic/*"], "budget": 5, "period": "day", "rpm": 30},
            {"match": {"repository_owner_id": "4242", "ref": "refs/heads/release/*"}, "rpm": 10}
          ]
        }
      ]
    }

- ``name`` names the issuer in identities: usage and limits of a token are recorded under
  ``oidc:NAME:IDENTITY``, IDENTITY being ``identity`` with each ``{claim}`` replaced by the token's claim
  (default ``{repository}@{ref}`` for GitHub Actions, ``{sub}`` for any other issuer).
- ``issuer`` is compared exactly with the token's ``iss``; its keys come from
  ``{issuer}/.well-known/openid-configuration``. It must be ``https://`` (``http://`` only for a
  loopback host, as in tests).
- ``audience`` must be in the token's ``aud``.
- ``rules``: the first whose every ``match`` condition holds gives the token its limits, with the
  fields and checks of a virtual key (:class:`proxy.gateway.service.KeySpec`): ``models``, ``budget``,
  ``period``, ``rpm``, ``tpm``, ``parallel``. A condition is a claim name and an fnmatch pattern (a value
  without ``*?[`` is an exact value) or a list of them (any). A rule must name at least one claim: a
  rule without one would let any repository in (GitHub's advice is to prefer the immutable
  ``repository_id`` / ``repository_owner_id``).
- ``leeway``: seconds of clock skew allowed on ``exp`` / ``nbf`` / ``iat``.

The gateway must be on (a master key): the tokens' usage and limits are the gateway's.
"""

from __future__ import annotations

import fnmatch
import re
import string
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from providers.errors import InvalidRequest

from .contract import Period
from .service import decode_spec

#: Longest token looked at (GitHub's are about 1 KB).
MAX_TOKEN = 16_384
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts, the first a JSON object (``eyJ`` is ``{"``): an ID token, not a virtual key.
    Here, not in :mod:`proxy.gateway.oidc`: the gateway asks it without loading PyJWT (~9 MB) when no
    issuer is configured."""
    return token.startswith("eyJ") and len(token) <= MAX_TOKEN and _JWT.fullmatch(token) is not None


__all__ = [
    "GITHUB_ISSUER",
    "NEEDS_GATEWAY",
    "OidcConfig",
    "OidcIssuer",
    "OidcRule",
    "claim_text",
    "is_loopback_url",
]

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
_GITHUB_IDENTITY = "{repository}@{ref}"
_DEFAULT_IDENTITY = "{sub}"

#: The message of the start-up error when ``oidc`` is configured but the gateway is off.
NEEDS_GATEWAY = (
    '"oidc" in config.json needs the team gateway, which keeps the tokens\' usage and limits: set a master key '
    "(SWITCHBOARD_MASTER_KEY or master_key in config.json), or remove the oidc section"
)

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_CLAIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$")]
_Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


def is_loopback_url(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS


def claim_text(value: Any) -> str | None:
    """A claim as the text rules and identities see: strings as they are, numbers and booleans as JSON
    writes them; None for a claim that is absent or not a scalar (which then matches nothing)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


class OidcRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: claim name → pattern, or a list of patterns (any of them).
    match: dict[str, _Pattern | list[_Pattern]] = {}
    # The limits of a virtual key; their checks are KeySpec's (see __post_init__).
    models: list[str] = []
    budget: float | None = None
    period: Period | None = None
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None

    def __post_init__(self) -> None:
        if not self.match:
            raise ValueError(
                'match names no claim: a rule must name at least one, e.g. {"repository_id": "123456789"}, '
                "or any repository's token would get in"
            )
        for claim, patterns in self.match.items():
            if not _CLAIM_NAME.fullmatch(claim):
                raise ValueError(f"match: {claim[:60]!r} is not a claim name (letters, digits and _)")
            if isinstance(patterns, list) and not patterns:
                raise ValueError(f"match.{claim} is an empty list; give at least one pattern")
        if self.period is not None and self.budget is None:
            raise ValueError("period applies to a budget; give budget too (or leave period out for no budget)")
        try:  # the checks of a virtual key's limits, in one place
            decode_spec(self.limits())
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None

    def limits(self) -> dict[str, Any]:
        """The rule's limits as KeySpec / KeyRecord fields (only those it sets)."""
        found: dict[str, Any] = {"models": list(self.models)} if self.models else {}
        for name in ("budget", "period", "rpm", "tpm", "parallel"):
            value = getattr(self, name)
            if value is not None:
                found[name] = value
        return found

    def matches(self, claims: dict[str, Any]) -> bool:
        for claim, patterns in self.match.items():
            value = claim_text(claims.get(claim))
            if value is None:
                return False
            options = patterns if isinstance(patterns, list) else [patterns]
            if not any(fnmatch.fnmatchcase(value, p) for p in options):
                return False
        return True


class OidcIssuer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: The issuer's name in identities (``oidc:NAME:...``): lower-case letters, digits, ``_.-``.
    name: _Name
    #: Compared exactly with the token's ``iss``.
    issuer: str
    #: Must be in the token's ``aud``.
    audience: Annotated[str, msgspec.Meta(min_length=1)]
    rules: Annotated[list[OidcRule], msgspec.Meta(min_length=1)]
    #: ``{claim}`` placeholders and text; default ``{repository}@{ref}`` for GitHub, ``{sub}`` otherwise.
    identity: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.issuer)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_url(self.issuer)):
            raise ValueError(
                f"issuer {self.issuer[:200]!r} must be an https:// URL (http:// only for a loopback host): "
                "the signing keys are fetched from it"
            )
        if not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"issuer {self.issuer[:200]!r} must be a URL with a host and no query or fragment")
        if self.identity is not None:
            self.claims_of_identity()  # raises on a malformed template

    @property
    def identity_template(self) -> str:
        if self.identity is not None:
            return self.identity
        return _GITHUB_IDENTITY if self.issuer.rstrip("/") == GITHUB_ISSUER else _DEFAULT_IDENTITY

    def claims_of_identity(self) -> list[tuple[str, str | None]]:
        """The template as (literal text, claim name or None) pieces; ValueError when it is malformed."""
        template = self.identity_template
        try:
            pieces = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"identity {template[:200]!r}: {exc}; write claims as {{claim}}") from None
        out: list[tuple[str, str | None]] = []
        for literal, field, spec, conversion in pieces:
            if field is not None and (spec or conversion or not _CLAIM_NAME.fullmatch(field)):
                raise ValueError(f"identity {template[:200]!r}: {{{field}}} is not a plain {{claim}} placeholder")
            out.append((literal, field))
        if not any(field for _, field in out):
            raise ValueError(
                f"identity {template[:200]!r} names no claim: every token would share one identity; "
                "use claims such as {repository}@{ref}"
            )
        return out

    def claims_checked(self) -> list[str]:
        """Every claim some rule checks, in the order the rules name them (for refusals)."""
        seen: dict[str, None] = {}
        for rule in self.rules:
            seen.update(dict.fromkeys(rule.match))
        return list(seen)


class OidcConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    issuers: Annotated[list[OidcIssuer], msgspec.Meta(min_length=1)]
    #: Seconds of clock skew allowed on exp, nbf and iat.
    leeway: Annotated[float, msgspec.Meta(ge=0, le=300)] = 60.0

    def __post_init__(self) -> None:
        names = [i.name for i in self.issuers]
        urls = [i.issuer for i in self.issuers]
        for what, values in (("name", names), ("issuer", urls)):
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"two issuers have the {what} {twice[0][:200]!r}; each needs its own")
