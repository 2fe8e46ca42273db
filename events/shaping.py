"""An event's data in the form fastavro writes, its personal leaves sealed, in one pass.

Compiled once per event type from its (expanded) schema: a record becomes a new dict, an array a
list, a personal leaf goes through its sealing transform, and a record inside a union is given
in fastavro's tuple notation ``(full name, record)``, so that fastavro need not validate the
record against each branch to find which one it is (~4 us for a connection's location).
Only the schemas' own unions are supported: ``null`` and one other branch, as validation assumes.

This replaces a deep copy of the data followed by a get and a set per personal leaf: the data
is read once, and nothing fastavro does not write is copied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Shape = Callable[[Any, Any], Any]
"""``(value, sealer) -> what fastavro writes``, for a value that is not None."""


def record_shape(schema: Mapping[str, Any], named: Mapping[str, Any],
                 transforms: Mapping[str, Shape], dotted: str = "data") -> Shape:
    """The shape of a record; ``transforms`` seal the personal leaves, by dotted path."""
    fields = tuple((f["name"], _field_shape(f, named, transforms, f"{dotted}.{f['name']}"))
                   for f in schema["fields"])

    def shape_record(value: Any, sealer: Any) -> dict[str, Any]:
        get = value.get
        return {name: v if (v := get(name)) is None or shape is None else shape(v, sealer)
                for name, shape in fields}

    return shape_record


def _field_shape(field: Mapping[str, Any], named: Mapping[str, Any],
                 transforms: Mapping[str, Shape], dotted: str) -> Shape | None:
    if "pii" in field and dotted in transforms:
        return transforms[dotted]
    return _shape(field["type"], named, transforms, dotted)


def _resolve(node: Any, named: Mapping[str, Any]) -> Any:
    """A named type's definition for a reference to it; any other node as it is."""
    if isinstance(node, str):
        return named.get(node, node)
    return node


def _shape(node: Any, named: Mapping[str, Any], transforms: Mapping[str, Shape],
           dotted: str) -> Shape | None:
    """The shape of a value of ``node``; None when the value is written as it is."""
    if isinstance(node, list):
        return _union_shape(node, named, transforms, dotted)
    node = _resolve(node, named)
    kind = node.get("type") if isinstance(node, dict) else node
    if kind == "record":
        return record_shape(node, named, transforms, dotted)
    if kind == "array":
        items = _shape(node["items"], named, transforms, dotted)
        if items is None:
            return _as_list
        return lambda value, sealer: [None if v is None else items(v, sealer) for v in value]
    if kind == "map":
        raise ValueError(f"{dotted}: maps are not supported in event schemas")
    return None


def _as_list(value: Any, sealer: Any) -> list[Any]:
    """An array as a list: a tuple would read as fastavro's union tuple notation."""
    return list(value)


def _union_shape(node: list[Any], named: Mapping[str, Any],
                 transforms: Mapping[str, Shape], dotted: str) -> Shape | None:
    branches = [b for b in node if b != "null"]
    if len(branches) != 1:
        raise ValueError(f"{dotted}: a union must be null and one other type")
    inner = _shape(branches[0], named, transforms, dotted)
    branch = _resolve(branches[0], named)
    if not (isinstance(branch, dict) and branch.get("type") == "record"):
        return inner
    assert inner is not None  # a record is always shaped
    name = branches[0] if isinstance(branches[0], str) else branch["name"]

    def shape_named_branch(value: Any, sealer: Any) -> tuple[str, Any]:
        return name, inner(value, sealer)

    return shape_named_branch
