"""``switchboard login anthropic``: Claude Pro/Max through Anthropic's OAuth.

Facts: ``reference/provider-facts.md`` §8 "Anthropic Claude Pro/Max". PKCE (S256) authorization code,
with ``state`` = the PKCE verifier. A local server on ``127.0.0.1:53692`` (``/callback``) receives
``code`` + ``state``; at the same time the terminal asks for the code to be pasted (the bare code, the
``code#state`` string claude.ai shows, or the full redirect URL), for a browser on another machine.
Whichever arrives first wins.

Token endpoint bodies are JSON. Stored entry: ``{"type": "oauth", "access", "refresh", "expires"}`` with
``expires = now + expires_in*1000 - 5 min`` (ms epoch). Requests with the token are shaped by
:mod:`providers.wire.anthropic_messages` (Bearer, Claude Code betas and system prompt prefix).

Environment (tests point these at fakes):

* ``SWITCHBOARD_CLAUDE_AUTHORIZE_URL`` — default ``https://claude.ai/oauth/authorize``;
* ``SWITCHBOARD_CLAUDE_TOKEN_URL`` — default ``https://platform.claude.com/v1/oauth/token``;
* ``SWITCHBOARD_CLAUDE_CALLBACK_PORT`` — default ``53692``; ``SWITCHBOARD_CLAUDE_CALLBACK_HOST`` — default
  ``127.0.0.1`` (the address the callback server binds; the redirect URI always names ``localhost``).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

from .authcode import Callback, TokenClient, browser_code
from .authcode import code_from_paste as _code_from_paste
from .base import LoginUI
from .common import pkce_pair

__all__ = ["CLIENT_ID", "FLOW", "ClaudeFlow", "code_from_paste", "pkce_pair"]

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
SCOPES = "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
DEFAULT_AUTHORIZE_URL = "https://claude.ai/oauth/authorize"
DEFAULT_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"  # noqa: S105 (a URL, not a secret)
DEFAULT_CALLBACK_PORT = 53692
CALLBACK_PATH = "/callback"
#: Subtracted from the token's lifetime so a request never starts with a token about to lapse (ms).
EXPIRY_MARGIN_MS = 5 * 60 * 1000


class ClaudeFlow:
    provider_id = "anthropic"
    label = "Claude Pro/Max"

    # endpoints (read from the environment on every use, so tests can point them at fakes)

    @staticmethod
    def authorize_endpoint() -> str:
        return os.environ.get("SWITCHBOARD_CLAUDE_AUTHORIZE_URL") or DEFAULT_AUTHORIZE_URL

    @staticmethod
    def token_endpoint() -> str:
        return os.environ.get("SWITCHBOARD_CLAUDE_TOKEN_URL") or DEFAULT_TOKEN_URL

    @staticmethod
    def callback_port() -> int:
        return _CALLBACK.port

    def redirect_uri(self) -> str:
        return _CALLBACK.redirect_uri

    def authorize_url(self, verifier: str, challenge: str) -> str:
        params = {
            "code": "true",
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": self.redirect_uri(),
            "scope": SCOPES,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": verifier,
        }
        endpoint = self.authorize_endpoint()
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    def login(self, ui: LoginUI) -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        # Claude's state is the PKCE verifier.
        url = self.authorize_url(verifier, challenge)
        code = browser_code(ui, _CALLBACK, verifier, url, lambda text: code_from_paste(text, verifier)[0])
        entry = _TOKENS.exchange(code, verifier, self.redirect_uri(), state=verifier)
        ui.say("Logged in to Claude.")
        return entry

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        return _TOKENS.refresh(entry)


_CALLBACK = Callback(
    name="Claude",
    account="Claude Pro/Max",
    path=CALLBACK_PATH,
    host_env="SWITCHBOARD_CLAUDE_CALLBACK_HOST",
    port_env="SWITCHBOARD_CLAUDE_CALLBACK_PORT",
    default_port=DEFAULT_CALLBACK_PORT,
    prompt="Paste the authorization code (or the redirect URL): ",
    paste_hint="paste the code shown after logging in instead.",
)
_TOKENS = TokenClient(
    name="Claude",
    client_id=CLIENT_ID,
    token_url=ClaudeFlow.token_endpoint,
    json_body=True,
    expiry_margin_ms=EXPIRY_MARGIN_MS,
)
FLOW = ClaudeFlow()


def code_from_paste(text: str, verifier: str) -> tuple[str, str]:
    """(code, state) from a pasted redirect URL, ``code#state``, query string or bare code.

    A bare code gets the verifier as its state (the state *is* the verifier); a state that does not
    match this login attempt fails.
    """
    return _code_from_paste(text, verifier, "Claude"), verifier
