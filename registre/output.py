"""Printing a command's answer: one JSON document, or the same document indented as text.

The web service sends the same JSON text (`to_json`), so an answer is byte-for-byte the
document `--json` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def to_json(answer: Any) -> str:
    """The JSON text of an answer: what `--json` prints and what the web service sends."""
    return json.dumps(answer, ensure_ascii=False, default=str)


def emit(answer: Any, as_json: bool, text: Callable[[Any], str] | None = None) -> None:
    """Print one JSON document, or the human-readable text of it."""
    if as_json:
        print(to_json(answer))
    else:
        print((text or render_text)(answer))


def render_text(value: Any, indent: int = 0) -> str:
    """Nested mappings and lists as indented ``key: value`` lines; nulls shown as '-'."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        if not value:
            return pad + "(none)"
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines.append(render_text(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(value, list):
        if not value:
            return pad + "(none)"
        for item in value:
            if isinstance(item, dict | list) and item:
                body = render_text(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return "\n".join(lines)


def _scalar(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict | list):
        return "(none)"
    return str(v)
