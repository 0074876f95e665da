"""Everything in a Gemini request besides ``contents``: tools, tool choice and ``generationConfig``.

Entry points: :func:`convert_tools`, :func:`convert_tool_choice`, :func:`generation_config` (sampling,
JSON output, thinking per the facts file §7), :func:`model_family`, and :func:`clean_schema`.

Gemini's ``Schema`` object is a fixed list of fields (``type``, ``format``, ``title``, ``description``,
``nullable``, ``enum``, ``items``, ``properties``, ``required``, ``anyOf``, ``propertyOrdering`` and the
numeric/length bounds); any other key is an ``INVALID_ARGUMENT`` for the whole request, and the Gemini
Developer API refuses ``additionalProperties`` outright. Clients send full JSON Schema (pydantic, zod,
MCP servers), so :func:`clean_schema` rewrites it, as the google-genai SDK does for its own users:

* ``$ref`` into ``$defs``/``definitions`` is inlined; a recursive reference cannot be expressed and is
  an :class:`InvalidRequest` naming the tool;
* ``allOf`` is merged, ``oneOf`` becomes ``anyOf``, ``const`` becomes a one-value ``enum``;
* ``"type": ["string", "null"]`` and ``anyOf [..., {"type": "null"}]`` become ``nullable``;
* ``enum`` values are strings (enums of numbers are listed in the description instead);
* ``format`` is kept only where Gemini knows it; ``required`` only names declared properties;
* a keyword of the wrong type (``"required": 5``) is dropped as if absent, and the cleaned schema is
  bounded in size and depth (inlining can multiply a small schema), beyond which it is a 400;
* everything else (``$schema``, ``additionalProperties``, ``strict``, ``default``, ``examples``,
  ``patternProperties``, ``not``, ``if``/``then``, ...) is dropped.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..canonical import Request, Tool
from ..errors import InvalidRequest
from .base import WireTarget

__all__ = ["clean_schema", "convert_tool_choice", "convert_tools", "generation_config", "model_family"]

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
    "null": "NULL",
}
#: Copied through unchanged (after the structural keys are handled).
_PLAIN = (
    "title",
    "description",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "pattern",
    "propertyOrdering",
)
_BUDGETS = {  # reasoning effort → thinkingBudget (facts §7), most specific id first
    "2.5-flash-lite": (512, 2048, 8192, 24576),
    "2.5-flash": (128, 2048, 8192, 24576),
    "2.5-pro": (128, 2048, 8192, 32768),
}
_EFFORTS = ("minimal", "low", "medium", "high")
_GEMINI_MAJOR = re.compile(r"gemini-(\d+)(?:\.\d+)?-(pro|flash)")
#: Vendor extras a client may add with extra_body; seed and penalties are typed Request fields, mapped
#: in google_generative_ai (penalties only where the model accepts them).
_EXTRA_GENERATION = {"top_k": "topK"}
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
#: Limits on the cleaned schema: far above real tool schemas, far below what exhausts the recursion limit
#: or memory when each ``$ref`` to a ``$defs`` entry that refers to others twice doubles the output.
_MAX_NODES = 5000
_MAX_NESTING = 48


class _Budget:
    """Nodes left to produce for one schema (``$ref`` inlining can multiply them), and the current depth."""

    __slots__ = ("depth", "left", "where")

    def __init__(self, where: str) -> None:
        self.left = _MAX_NODES
        self.depth = 0
        self.where = where

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0 or self.depth > _MAX_NESTING:
            raise InvalidRequest(
                f"{self.where}: the schema expands (after inlining $ref) beyond {_MAX_NODES} nodes or "
                f"{_MAX_NESTING} levels; simplify it or reference fewer definitions",
                param=self.where,
            )


def convert_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    """``tools``: one ``functionDeclarations`` list with each schema cleaned."""
    return [{"functionDeclarations": [_convert_tool(t) for t in tools]}]


def convert_tool_choice(req: Request) -> dict[str, Any] | None:
    """``toolConfig.functionCallingConfig``, only when the client chose (Gemini's default is AUTO)."""
    choice = req.tool_choice
    if choice is None:
        return None
    if choice.mode == "tool" and choice.name:
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"none": "NONE", "required": "ANY"}.get(choice.mode, "AUTO")}


def generation_config(req: Request, target: WireTarget) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in (
        ("temperature", req.temperature),
        ("topP", req.top_p),
        ("maxOutputTokens", req.max_tokens),
        ("stopSequences", req.stop or None),
    ):
        if value is not None:
            config[key] = value
    for key, field in _EXTRA_GENERATION.items():
        if req.extra.get(key) is not None:
            config[field] = req.extra[key]
    _convert_response_format(req.response_format, config)
    thinking = _thinking_config(req, target)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def model_family(model_id: str) -> str:
    """``gemini-3-pro``, ``gemini-3-flash`` (3.x and the ``-latest`` aliases), ``gemma-4`` or ``budget``."""
    mid = model_id.lower()
    if mid.startswith(("gemma-4", "models/gemma-4")):
        return "gemma-4"
    if mid.endswith(("gemini-flash-latest", "gemini-flash-lite-latest")):
        return "gemini-3-flash"
    m = _GEMINI_MAJOR.search(mid)
    return f"gemini-3-{m.group(2)}" if m and int(m.group(1)) >= 3 else "budget"


def clean_schema(schema: Any, *, where: str) -> dict[str, Any]:
    """A Gemini ``Schema`` equivalent to ``schema``; ``where`` names the parameter in error messages."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{where}: a JSON schema must be an object", param=where)
    defs = _collect_defs(schema, {})
    return _clean(schema, defs, (), where, _Budget(where))


def _collect_defs(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    found = {**_dict(node.get("definitions")), **_dict(node.get("$defs"))}
    return {**defs, **found} if found else defs


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _clean(node: Any, defs: dict[str, Any], refs: tuple[str, ...], where: str, budget: _Budget) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}  # ``true`` / ``{}``: any value; Gemini has no better way to say it
    budget.spend()
    budget.depth += 1
    try:
        return _clean_node(node, defs, refs, where, budget)
    finally:
        budget.depth -= 1


def _clean_node(
    node: dict[str, Any], defs: dict[str, Any], refs: tuple[str, ...], where: str, budget: _Budget
) -> dict[str, Any]:
    defs = _collect_defs(node, defs)
    node, refs = _deref(node, defs, refs, where)
    if "allOf" in node:
        node = _merge_all_of(node, defs, refs, where)
    out: dict[str, Any] = {}
    _convert_type(node, out)
    alternatives = node.get("anyOf", node.get("oneOf"))
    if isinstance(alternatives, list):
        _convert_any_of(alternatives, defs, refs, where, out, budget)
    _convert_enum(node, out)
    for key in _PLAIN:
        if key in node and key not in out:
            out[key] = node[key]
    _convert_format(node, out)
    _convert_children(node, defs, refs, where, out, budget)
    return out


def _deref(
    node: dict[str, Any], defs: dict[str, Any], refs: tuple[str, ...], where: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``node`` with its ``$ref`` (and a chain of them) inlined; ``refs`` is the path of references taken."""
    while "$ref" in node:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
        if not isinstance(ref, str) or not ref.startswith(("#/$defs/", "#/definitions/")) or name not in defs:
            raise InvalidRequest(
                f"{where}: the schema reference {ref!r} cannot be resolved; Gemini needs references into "
                "the schema's own $defs (they are inlined)",
                param=where,
            )
        if ref in refs:
            raise InvalidRequest(
                f"{where}: the schema is recursive ({ref!r} refers to itself), which Gemini function "
                "schemas cannot express; flatten it to a fixed depth",
                param=where,
            )
        # Keywords next to $ref (a description, nullable) refine the referenced schema.
        target = defs[name] if isinstance(defs[name], dict) else {}
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        refs = (*refs, ref)
    return node, refs


def _merge_all_of(node: dict[str, Any], defs: dict[str, Any], refs: tuple[str, ...], where: str) -> dict[str, Any]:
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for part in node["allOf"] if isinstance(node["allOf"], list) else ():
        if not isinstance(part, dict):
            continue
        part, _ = _deref(part, defs, refs, where)
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**_dict(merged.get("properties")), **value}
            elif key == "required" and isinstance(value, list):
                before = merged.get("required")
                merged["required"] = [*(before if isinstance(before, list) else ()), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _convert_type(node: dict[str, Any], out: dict[str, Any]) -> None:
    kind = node.get("type")
    names = (
        [kind] if isinstance(kind, str) else [n for n in kind if isinstance(n, str)] if isinstance(kind, list) else []
    )
    types = [_TYPES[n] for n in names if n in _TYPES and n != "null"]
    if "null" in names or node.get("nullable") is True:
        out["nullable"] = True
    if len(types) == 1:
        out["type"] = types[0]
    elif len(types) > 1:
        out["anyOf"] = [{"type": t} for t in types]
    elif "const" in node or isinstance(node.get("enum"), list):
        out["type"] = _enum_type([node["const"]] if "const" in node else node["enum"])
    elif isinstance(node.get("properties"), dict):
        out["type"] = "OBJECT"
    elif "items" in node:
        out["type"] = "ARRAY"


def _enum_type(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOLEAN"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INTEGER"
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "NUMBER"
    return "STRING"


def _convert_any_of(
    alternatives: list[Any],
    defs: dict[str, Any],
    refs: tuple[str, ...],
    where: str,
    out: dict[str, Any],
    budget: _Budget,
) -> None:
    options: list[dict[str, Any]] = []
    for alt in alternatives:
        cleaned = _clean(alt, defs, refs, where, budget)
        if cleaned.get("type") == "NULL" or cleaned == {"nullable": True}:
            out["nullable"] = True
        else:
            options.append(cleaned)
    if len(options) == 1:
        for key, value in options[0].items():
            out.setdefault(key, value)
    elif options:
        out["anyOf"] = options


def _convert_enum(node: dict[str, Any], out: dict[str, Any]) -> None:
    values = [node["const"]] if "const" in node else node.get("enum")
    if not isinstance(values, list) or not values:
        return
    if None in values:
        out["nullable"] = True
        values = [v for v in values if v is not None]
    if out.get("type", "STRING") == "STRING":
        out["enum"] = [v if isinstance(v, str) else msgspec.json.encode(v).decode() for v in values]
        return
    # Gemini's enum lists strings; keep the numeric type and say the allowed values in words.
    listed = ", ".join(msgspec.json.encode(v).decode() for v in values)
    description = node.get("description")
    out["description"] = f"{description} (one of: {listed})" if description else f"One of: {listed}"


def _convert_format(node: dict[str, Any], out: dict[str, Any]) -> None:
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt


def _convert_children(
    node: dict[str, Any], defs: dict[str, Any], refs: tuple[str, ...], where: str, out: dict[str, Any], budget: _Budget
) -> None:
    props = node.get("properties")
    if isinstance(props, dict) and props:
        out["properties"] = {str(k): _clean(v, defs, refs, f"{where}.{k}", budget) for k, v in props.items()}
        required = node.get("required")
        if isinstance(required, list):
            named = [r for r in dict.fromkeys(r for r in required if isinstance(r, str)) if r in out["properties"]]
            if named:
                out["required"] = named
    ordering = out.pop("propertyOrdering", None)
    if isinstance(ordering, list) and "properties" in out:
        out["propertyOrdering"] = [p for p in ordering if isinstance(p, str) and p in out["properties"]]
    items = node.get("items")
    if isinstance(items, list):  # draft-4 tuple form: any of the listed item schemas
        items = {"anyOf": items} if len(items) > 1 else (items[0] if items else {})
    if isinstance(items, dict):
        out["items"] = _clean(items, defs, refs, f"{where}[]", budget)


# --- request configuration ---------------------------------------------------------------------


def _convert_tool(tool: Tool) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    params = clean_schema(tool.parameters or {}, where=f"tools[{tool.name}].parameters")
    if params.get("properties"):  # Gemini refuses an OBJECT without properties: leave it out
        decl["parameters"] = params
    return decl


def _convert_response_format(fmt: dict[str, Any] | None, config: dict[str, Any]) -> None:
    kind = fmt.get("type") if fmt else None
    if fmt is None or kind == "text":
        return
    if kind not in ("json_object", "json_schema"):
        raise InvalidRequest(f"response_format type {kind!r} is not supported by Gemini", param="response_format")
    config["responseMimeType"] = "application/json"
    schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if schema is not None:
        config["responseSchema"] = clean_schema(schema, where="response_format.json_schema.schema")


def _thinking_config(req: Request, target: WireTarget) -> dict[str, Any] | None:
    if req.thinking_budget is not None:
        return {"thinkingBudget": req.thinking_budget, "includeThoughts": req.thinking_budget != 0}
    effort = req.reasoning_effort
    model = target.model
    if effort is None or (model is not None and not model.reasoning):
        return None
    if model is not None and model.thinking_level_map is not None and effort in model.thinking_level_map:
        mapped = model.thinking_level_map[effort]
        if mapped is None:
            return None  # the catalog says this model cannot honour that level: the default applies
        if mapped.lstrip("-").isdigit():
            return {"thinkingBudget": int(mapped), "includeThoughts": mapped != "0"}
        return {"thinkingLevel": mapped.upper(), "includeThoughts": True}
    mid = target.model_id.lower()
    family = model_family(mid)
    if effort in ("none", "off"):
        if family == "gemini-3-pro":
            return {"thinkingLevel": "LOW"}
        if family in ("gemini-3-flash", "gemma-4"):
            return {"thinkingLevel": "MINIMAL"}
        # 2.5 Pro cannot switch thinking off (budget 0 is a 400); its smallest budget is the nearest.
        return {"thinkingBudget": 128 if "2.5-pro" in mid else 0}
    level = {"xhigh": "high", "max": "high"}.get(effort, effort)
    if level not in _EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort {effort!r} is not one of none, minimal, low, medium, high", param="reasoning_effort"
        )
    if family == "gemini-3-pro":
        return {"includeThoughts": True, "thinkingLevel": "LOW" if level in ("minimal", "low") else "HIGH"}
    if family == "gemini-3-flash":
        return {"includeThoughts": True, "thinkingLevel": level.upper()}
    if family == "gemma-4":
        return {"includeThoughts": True, "thinkingLevel": "MINIMAL" if level in ("minimal", "low") else "HIGH"}
    budgets = next((b for key, b in _BUDGETS.items() if key in mid), None)
    return {"includeThoughts": True, "thinkingBudget": budgets[_EFFORTS.index(level)] if budgets else -1}
