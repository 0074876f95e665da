"""Claude's request rules, shared by :mod:`.anthropic_messages` and :mod:`.bedrock_converse`.

Claude takes the same native fields whether it is reached through Anthropic's Messages API or through
Bedrock Converse (which forwards them in ``additionalModelRequestFields``), so the rules live here once:
which effort a model accepts, adaptive versus budget thinking and the budgets, the interleaved-thinking
beta, when thinking must stay off (a forced tool, a tool turn continued without signed thinking) and
tool-call ids. Facts: ``reference/provider-facts.md`` §4 and §11.

The differences between the two routes are deliberate and stated here (and tested in
``tests/test_fidelity_claude_rules.py``):

* the beta goes in the ``anthropic-beta`` header on Anthropic, in the body's ``anthropic_beta`` on Bedrock;
* Bedrock asks for ``display: "summarized"`` on both thinking kinds and leaves it out on GovCloud, which
  refuses it; Anthropic asks for it on adaptive thinking only (the Anthropic-compatible servers, MiniMax
  and Kimi, accept budget thinking without it);
* with no ``max_tokens`` from the client, Anthropic uses the model's limit, Bedrock the budget plus 4096;
* thinking that cannot be replayed signed (unsigned, or signed elsewhere) is dropped on Anthropic and kept
  as plain text on Bedrock (provider facts §4).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..canonical import Request
from .base import WireTarget

__all__ = [
    "INTERLEAVED_THINKING_BETA",
    "ClaudeThinking",
    "oauth_token",
    "plan_thinking",
    "tool_id",
    "unsigned_tool_turn",
]

INTERLEAVED_THINKING_BETA = "interleaved-thinking-2025-05-14"
_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 16384, "max": 16384}
_MIN_BUDGET = 1024
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_ADAPTIVE = re.compile(r"opus-4-[678]|sonnet-4-6|sonnet-5|fable-5")
#: The efforts above ``high`` and the models that accept them; others fall back to ``high``.
_CAPABLE = {
    "xhigh": re.compile(r"opus-4-[78]|sonnet-5|fable-5"),
    "max": re.compile(r"opus-4-[678]|sonnet-5|fable-5"),
}
_TOOL_ID_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
# Block kinds in both formats: Anthropic's ``{"type": ...}`` and Bedrock's single-key blocks.
_RESULTS = frozenset({"tool_result", "toolResult"})
_USES = frozenset({"tool_use", "toolUse"})
_SIGNED = frozenset({"thinking", "redacted_thinking", "reasoningContent"})


@dataclass(frozen=True, slots=True)
class ClaudeThinking:
    kind: Literal["adaptive", "budget"]
    #: ``output_config.effort`` (adaptive) or None.
    effort: str | None = None
    #: ``thinking.budget_tokens`` (budget) or None.
    budget: int | None = None
    #: The ``max_tokens`` to send (budget thinking may raise it to leave room for the answer).
    max_tokens: int | None = None


def plan_thinking(
    req: Request, target: WireTarget, max_tokens: int | None, *, forced_tool: bool, unsigned_turn: bool
) -> ClaudeThinking | None:
    """The thinking to ask for, or None (not asked for, not a reasoning model, or not allowed here).

    ``max_tokens`` is what would be sent without thinking (None: the caller has no default).
    """
    effort = _requested_effort(req, target)
    if effort is None or forced_tool or unsigned_turn:
        return None
    model_id = target.model_id
    if _ADAPTIVE.search(model_id):
        effort = "low" if effort == "minimal" else effort
        capable = _CAPABLE.get(effort)
        if effort not in _EFFORTS or (capable is not None and not capable.search(model_id)):
            effort = "high"
        return ClaudeThinking("adaptive", effort=effort, max_tokens=max_tokens)
    budget = max(req.thinking_budget or _BUDGETS.get(effort, _BUDGETS["medium"]), _MIN_BUDGET)
    limit = max_tokens or budget + 4096
    if limit <= budget:
        # OpenAI's max_completion_tokens includes reasoning; keep room for the answer the client asked for.
        limit = budget + limit
        if target.model is not None:
            limit = min(limit, target.model.max_tokens)
        if limit <= budget:
            budget = limit - _MIN_BUDGET
            if budget < _MIN_BUDGET:
                return None
    return ClaudeThinking("budget", budget=budget, max_tokens=limit)


def unsigned_tool_turn(turns: list[dict[str, Any]]) -> bool:
    """With thinking on, an assistant tool-use turn being continued must start with signed thinking.

    When the history came from elsewhere (no signed thinking), the only valid request is without thinking.
    ``turns`` are converted messages in either format.
    """
    if len(turns) < 2 or not any(_kind(b) in _RESULTS for b in turns[-1]["content"]):
        return False
    prev = turns[-2]
    if prev["role"] != "assistant" or not any(_kind(b) in _USES for b in prev["content"]):
        return False
    return _kind(prev["content"][0]) not in _SIGNED


def tool_id(call_id: str) -> str:
    """Claude wants tool ids matching ``[a-zA-Z0-9_-]{1,64}``; ids from other providers may not."""
    return _TOOL_ID_BAD_CHARS.sub("_", call_id)[:64] or "call"


def oauth_token(auth_headers: Mapping[str, str]) -> str | None:
    """A Claude Pro/Max OAuth token, whether the credential put it in x-api-key or already as Bearer."""
    for name, value in auth_headers.items():
        lowered = name.lower()
        if lowered == "x-api-key" and "sk-ant-oat" in value:
            return value
        if lowered == "authorization" and "sk-ant-oat" in value:
            return value.removeprefix("Bearer ").strip()
    return None


def _requested_effort(req: Request, target: WireTarget) -> str | None:
    effort = req.reasoning_effort
    if effort is None and req.thinking_budget:
        effort = "medium"
    model = target.model
    if effort is None or (model is not None and not model.reasoning):
        return None
    if model is not None and model.thinking_level_map is not None and effort in model.thinking_level_map:
        effort = model.thinking_level_map[effort]
    return None if effort in (None, "none", "off") else effort


def _kind(block: dict[str, Any]) -> str:
    kind = block.get("type")
    return kind if isinstance(kind, str) else next(iter(block), "")
