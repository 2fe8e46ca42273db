"""Reading JSON-lines event files: every bad line is named by its number, never fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

MAX_LINE = 1 << 20


@dataclass(frozen=True)
class Line:
    number: int
    value: Any = None
    error: str | None = None


def read_lines(stream: BinaryIO) -> Iterator[Line]:
    """Yield each non-blank line parsed as JSON, or with the reason it is not."""
    for number, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE:
            yield Line(number, error=f"line is {len(raw)} bytes, over the {MAX_LINE} byte limit")
            continue
        text = raw.strip()
        if not text:
            continue
        try:
            yield Line(number, json.loads(text))
        except UnicodeDecodeError:
            yield Line(number, error="not UTF-8")
        except json.JSONDecodeError as exc:
            yield Line(number, error=f"not JSON ({exc.msg} at column {exc.colno})")
        except ValueError:  # e.g. an integer of more than 4300 digits
            yield Line(number, error="not JSON (a number is too long)")
        except RecursionError:
            yield Line(number, error="not JSON (nested too deeply)")
