"""Who issued a reasoning signature, so it is replayed only where it can be verified.

Signed thinking (Anthropic and Bedrock ``signature``, redacted thinking, OpenAI ``encrypted_content``,
Gemini ``thoughtSignature``) is bound to the service that issued it: another service speaking the same
wire API (MiniMax or Kimi for Anthropic's, Azure, xAI or Copilot for OpenAI's) cannot verify it and
answers 400, or silently loses the reasoning. Switchboard tags what it returns with :func:`issuer`
(``Thinking.source`` / ``ToolCall.signature_source``, the ``provider`` of a ``thinking_blocks`` entry; the
decoders take it as their ``source``) and a wire module replays a signature only when the target's issuer
is the same string.

The issuer is ``{wire API}:{provider id}``, plus ``+{account}`` where one provider id covers accounts
that sign apart. Decided (when unsure, treated as different signers):

* each provider id is its own signer, even over the same model: Anthropic, Claude on Bedrock, on Vertex
  and behind a gateway are different services. Anthropic describes signatures as portable between its
  own platforms, but a wrong replay costs a 400 where a dropped one costs only the earlier reasoning;
* on ``anthropic``, a Claude Pro/Max subscription token (``+subscription``) and an API key are different
  accounts, for the same reason;
* the wire API is part of the tag because one provider id can serve several (OpenCode: Claude over
  Anthropic's API, GPT over Responses).

A dropped signature keeps its text where the API accepts unsigned text; tags written before this scheme
(a bare wire-API name) match no issuer and are dropped the same way.
"""

from __future__ import annotations

from .base import WireTarget

__all__ = ["issuer"]


def issuer(api: str, target: WireTarget, account: str = "") -> str:
    """The signer tag for reasoning produced by ``target`` over wire API ``api``."""
    tag = f"{api}:{target.provider_id}"
    return f"{tag}+{account}" if account else tag
