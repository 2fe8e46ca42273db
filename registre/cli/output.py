"""Human-readable rendering of a command's answer (the JSON document, indented as text)."""

from __future__ import annotations

from typing import Any


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
