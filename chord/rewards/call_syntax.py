"""Parse tool calls written as ToolACE brackets or JSON, and put them in a comparable form.

Accepted forms (surrounding whitespace, a trailing EOS marker and a ``` fence are ignored):
- brackets: `[name(arg=value, ...), other(...)]`, or one bare call `name(arg=value)`. Names may
  contain spaces, dots or dashes (ToolACE has names like `Get Stock Price`). Values are Python
  literals (str, int, float, bool, None, list, tuple, dict; JSON's true/false/null too), read
  with `ast` node by node: nothing is ever evaluated. Only keyword arguments are accepted.
- JSON: `{"name": ..., "arguments": {...}}` (also "parameters", arguments as a JSON string, or
  OpenAI's `{"function": {...}}` wrapper), or a list of such objects.

`call_key` gives a hashable normal form: argument order does not matter, tuples equal lists,
a float with an integral value equals the int, bool never equals int, strings are exact.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chord.rewards.answer import strip_eos


class ToolCallParseError(ValueError):
    """Text that is not a tool call in any accepted form; the message says where and why."""


@dataclass(frozen=True)
class ToolCall:
    """One call: the function name and its keyword arguments (plain Python values)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
_NAME_FORBIDDEN = set("()[]{}=,'\"")
_JSON_WORDS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def _skip_string(text: str, i: int) -> int:
    """Index just after the string literal starting at `text[i]` (a quote); raises if unterminated."""
    quote = text[i]
    triple = text[i : i + 3] == quote * 3
    delim = quote * 3 if triple else quote
    j = i + len(delim)
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text.startswith(delim, j):
            return j + len(delim)
        j += 1
    raise ToolCallParseError(f"unterminated string starting at character {i}")


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split `text` at `sep` characters that are outside strings and brackets."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            i = _skip_string(text, i)
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _matching_close(text: str, open_idx: int) -> int:
    """Index of the bracket closing the one at `text[open_idx]`; raises if unbalanced."""
    stack: list[str] = []
    i = open_idx
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            i = _skip_string(text, i)
            continue
        if ch in _OPEN:
            stack.append(_OPEN[ch])
        elif ch in _CLOSE:
            if not stack or stack.pop() != ch:
                raise ToolCallParseError(f"unbalanced {ch!r} at character {i}")
            if not stack:
                return i
        i += 1
    raise ToolCallParseError(f"unclosed {text[open_idx]!r} at character {open_idx}")


def _literal(node: ast.AST) -> Any:
    """The Python value of a literal expression node; raises for anything else (no evaluation)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, int, float, bool)) or node.value is None:
            return node.value
        raise ToolCallParseError(f"unsupported constant {node.value!r}")
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(elt) for elt in node.elts]
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise ToolCallParseError("'**' inside a dict is not a literal")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ToolCallParseError("a sign applies to numbers only")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in _JSON_WORDS:
        return _JSON_WORDS[node.id]
    raise ToolCallParseError(f"not a literal value: {ast.unparse(node)[:80]!r}")


def _parse_value(src: str) -> Any:
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolCallParseError(f"cannot read value {src.strip()[:80]!r}: {exc.msg}") from None
    return _literal(tree.body)


def _parse_arguments(src: str, name: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if not src.strip():
        return arguments
    for part in _split_top_level(src, ","):
        if not part.strip():
            raise ToolCallParseError(f"empty argument in call to {name!r}")
        eq = _split_top_level(part, "=")
        if len(eq) < 2:
            raise ToolCallParseError(f"positional argument {part.strip()[:80]!r} in call to {name!r}")
        key = eq[0].strip()
        if not key:
            raise ToolCallParseError(f"argument without a name in call to {name!r}")
        if key in arguments:
            raise ToolCallParseError(f"argument {key!r} repeated in call to {name!r}")
        arguments[key] = _parse_value("=".join(eq[1:]))
    return arguments


def _parse_brackets(text: str) -> list[ToolCall]:
    body = text
    if text.startswith("["):
        if _matching_close(text, 0) != len(text) - 1:
            raise ToolCallParseError("text after the closing ']'")
        body = text[1:-1]
    calls: list[ToolCall] = []
    pos = 0
    while True:
        while pos < len(body) and body[pos].isspace():
            pos += 1
        if pos >= len(body):
            break
        paren = body.find("(", pos)
        if paren < 0:
            raise ToolCallParseError(f"expected 'name(...)' at {body[pos : pos + 40]!r}")
        name = body[pos:paren].strip()
        if not name or any(ch in _NAME_FORBIDDEN for ch in name):
            raise ToolCallParseError(f"bad function name {name[:80]!r}")
        close = _matching_close(body, paren)
        calls.append(ToolCall(name, _parse_arguments(body[paren + 1 : close], name)))
        pos = close + 1
        while pos < len(body) and body[pos].isspace():
            pos += 1
        if pos < len(body):
            if body[pos] != ",":
                raise ToolCallParseError(f"expected ',' or end after call to {name!r}, got {body[pos]!r}")
            pos += 1
    return calls


def _call_from_json(obj: Any, where: str) -> ToolCall:
    if not isinstance(obj, dict):
        raise ToolCallParseError(f"{where}: expected an object, got {type(obj).__name__}")
    if "name" not in obj and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ToolCallParseError(f"{where}: missing or empty 'name'")
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolCallParseError(f"{where}: 'arguments' is not valid JSON: {exc.msg}") from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolCallParseError(f"{where}: 'arguments' must be an object")
    return ToolCall(name.strip(), dict(arguments))


def _parse_json(text: str) -> list[ToolCall]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolCallParseError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    if isinstance(data, list):
        return [_call_from_json(item, f"call {i}") for i, item in enumerate(data)]
    return [_call_from_json(data, "call")]


def _strip_fence(text: str) -> str:
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        inner = text[3:-3]
        first_newline = inner.find("\n")
        if first_newline >= 0 and inner[:first_newline].strip().isalpha():  # ```json / ```python
            inner = inner[first_newline + 1 :]
        return inner.strip()
    return text


def parse_tool_calls(text: str) -> list[ToolCall]:
    """All calls in `text` (brackets or JSON, see the module docstring); raises ToolCallParseError."""
    if not isinstance(text, str):
        raise ToolCallParseError(f"expected a string, got {type(text).__name__}")
    body = _strip_fence(strip_eos(text))
    if not body:
        raise ToolCallParseError("empty response")
    looks_json = body.startswith("{") or (body.startswith("[") and body[1:].lstrip().startswith("{"))
    if looks_json:
        return _parse_json(body)
    return _parse_brackets(body)


def _canonical(value: Any) -> Any:
    """Hashable normal form of an argument value (see the module docstring)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("num", value)
    if isinstance(value, float):
        return ("num", int(value)) if value.is_integer() else ("num", value)
    if isinstance(value, str):
        return ("str", value)
    if value is None:
        return ("null",)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _canonical(v)) for k, v in value.items())))
    raise TypeError(f"unsupported argument value type {type(value).__name__}")


def call_key(call: ToolCall) -> tuple:
    """Hashable normal form of one call: (name, sorted normalised arguments)."""
    return (call.name, _canonical(call.arguments))


def calls_match(predicted: list[ToolCall], expected: list[ToolCall]) -> bool:
    """True when both hold the same calls as multisets (order of calls does not matter)."""
    return Counter(call_key(c) for c in predicted) == Counter(call_key(c) for c in expected)


def format_calls(calls: list[ToolCall]) -> str:
    """Bracket form of `calls`, arguments sorted by name: `[f(a=1, b='x')]`."""
    rendered = []
    for call in calls:
        args = ", ".join(f"{k}={call.arguments[k]!r}" for k in sorted(call.arguments))
        rendered.append(f"{call.name}({args})")
    return "[" + ", ".join(rendered) + "]"
