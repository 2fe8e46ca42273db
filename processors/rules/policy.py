"""The policy as data: every duration of domain.md, changeable by a policy file.

The retention durations, and the response time to data-subject requests (GDPR art. 12(3): one
month, extendable once by up to two more), are all calendar months read from here.

The defaults live in ``schemas/policy.default.json`` (documented entry by entry) and nowhere
else: the ``Policy`` dataclass reads its defaults from that file, so ``Policy()`` is the default
policy. Every rule that needs a duration takes the loaded ``Policy``; none has a constant of its
own. A policy file (``REGISTRE_POLICY_FILE``) has the same shape and may give any subset of
the durations:

.. code-block:: json

    {"format": 1,
     "durations": {"connection_location_months": {"months": 6, "doc": "shorter, per DPO 2026-04"},
                   "consent_validity_months": 12}}

An entry is either ``{"months": N, "doc": "..."}`` or the bare integer ``N``. Unknown names,
negative, non-integer or absurd (> 1200 months) values, and malformed JSON are refused with a
``ValueError`` naming the file, the entry and its line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

POLICY_ENV = "REGISTRE_POLICY_FILE"
DEFAULT_POLICY_RESOURCE = "policy.default.json"
FORMAT = 1
MAX_MONTHS = 1200  # 100 years: anything longer is a typo, not a policy


def default_policy_text() -> str:
    """The text of the packaged, documented default policy (``schemas/policy.default.json``)."""
    return resources.files("schemas").joinpath(DEFAULT_POLICY_RESOURCE).read_text("utf-8")


def _packaged(name: str) -> Any:
    """The packaged default of one duration (checked when the dataclass is built)."""
    entry = json.loads(default_policy_text())["durations"][name]
    return field(default=entry["months"] if isinstance(entry, Mapping) else entry)


@dataclass(frozen=True)
class Policy:
    """Every duration, in calendar months (meanings: the packaged policy file)."""

    # identity/contact kept until end of account + N months when a DocumentIssued exists
    identity_contact_after_end_with_document_months: int = _packaged(
        "identity_contact_after_end_with_document_months")
    # per monthly key, counted from the END of the key's UTC month
    connection_location_months: int = _packaged("connection_location_months")
    # a consent choice is valid N months from the instant it was given
    consent_validity_months: int = _packaged("consent_validity_months")
    # sharing and disclosure records kept N months after the end of the account
    sharing_records_after_end_months: int = _packaged("sharing_records_after_end_months")
    # a data-subject request is due N months after its receipt (GDPR art. 12(3))
    request_response_months: int = _packaged("request_response_months")
    # ... extendable once, within those first months, by 1 up to N more months
    request_extension_max_months: int = _packaged("request_extension_max_months")

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_months(f.name, getattr(self, f.name))

    def as_json(self) -> dict[str, Any]:
        """The policy in the file format (without docs), e.g. to show the effective policy."""
        return {
            "format": FORMAT,
            "durations": {f.name: {"months": getattr(self, f.name)} for f in fields(self)},
        }


DURATION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Policy))


def _check_months(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: months must be an integer, got {value!r}")
    if not 0 <= value <= MAX_MONTHS:
        raise ValueError(f"{name}: months must be between 0 and {MAX_MONTHS}, got {value}")
    return value


def _line_of(text: str, name: str) -> int | None:
    """The 1-based line where ``"name"`` first appears as a JSON key, if it does."""
    needle = json.dumps(name)
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _where(source: str, text: str, name: str) -> str:
    line = _line_of(text, name)
    return f"{source}, line {line}" if line else source


def parse_policy(text: str, source: str = "<policy>", base: Policy | None = None) -> Policy:
    """A policy from the text of a policy file; durations it omits come from ``base``."""
    base = base if base is not None else Policy()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source}, line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(doc, Mapping):
        raise ValueError(f"{source}: a policy file is a JSON object, got {type(doc).__name__}")
    for key in doc:
        if key not in ("doc", "format", "durations"):
            raise ValueError(
                f"{_where(source, text, key)}: unknown top-level key {key!r}"
                " (expected 'doc', 'format', 'durations')"
            )
    if "format" in doc and (isinstance(doc["format"], bool) or doc["format"] != FORMAT):
        raise ValueError(
            f"{_where(source, text, 'format')}: format: unsupported {doc['format']!r}"
            f" (this registre reads format {FORMAT})"
        )
    if "doc" in doc and not isinstance(doc["doc"], str):
        raise ValueError(f"{_where(source, text, 'doc')}: doc: must be a string")
    durations = doc.get("durations", {})
    if not isinstance(durations, Mapping):
        raise ValueError(f"{_where(source, text, 'durations')}: durations: must be an object")
    values = {name: getattr(base, name) for name in DURATION_NAMES}
    for name, entry in durations.items():
        where = _where(source, text, name)
        if name not in values:
            raise ValueError(
                f"{where}: unknown duration {name!r} (known: {', '.join(DURATION_NAMES)})"
            )
        if isinstance(entry, Mapping):
            extra = sorted(set(entry) - {"months", "doc"})
            if extra:
                raise ValueError(f"{where}: {name}: unknown field(s) {', '.join(extra)}")
            if "months" not in entry:
                raise ValueError(f"{where}: {name}: missing 'months'")
            if "doc" in entry and not isinstance(entry["doc"], str):
                raise ValueError(f"{where}: {name}: doc must be a string")
            months = entry["months"]
        else:
            months = entry
        try:
            values[name] = _check_months(name, months)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return Policy(**values)


def load_policy(path: Path | None) -> Policy:
    """The policy of ``path``, or the packaged defaults when ``path`` is None.

    A file may give only some durations; the others are the defaults. A missing, unreadable or
    invalid file is a ``ValueError`` naming the file and, where it applies, the entry and line.
    """
    defaults = parse_policy(default_policy_text(), f"schemas/{DEFAULT_POLICY_RESOURCE}")
    if path is None:
        return defaults
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the policy file ({exc})") from None
    return parse_policy(text, str(path), base=defaults)


def policy_from_env(environ: Mapping[str, str]) -> Policy:
    """The policy named by ``REGISTRE_POLICY_FILE`` in ``environ`` (defaults when unset)."""
    value = environ.get(POLICY_ENV, "").strip()
    return load_policy(Path(value) if value else None)
