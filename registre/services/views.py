"""Rendering a customer view for a reader: decrypt personal fields through the key store.

Personal fields are shown only while the account is active; a destroyed key simply leaves
its fields out (they read as null). The compliance path (`include_retained`) may read what
is retained after deletion; the caller records that read. Consent statuses and the sharing
records' retention are judged at the reader's instant under the loaded policy.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from events.catalogue import Catalogue, PiiField, load_catalogue
from events.codec import lookup_from, open_field
from events.keys import KeyRef, key_period
from events.keystore import KeyStore
from events.model import format_instant
from processors.rules.erasure import sharing_records_until_view
from processors.rules.fold import PERSONAL_GROUPS, SealedRef, connection_refs, personal_refs
from processors.rules.policy import Policy
from processors.rules.timeutil import add_months


def _field(catalogue: Catalogue, event_type: str, dotted: str) -> PiiField:
    for f in catalogue.types[event_type].pii:
        if f.dotted == dotted:
            return f
    raise KeyError(f"{event_type}.{dotted}")


def decrypt_refs(subject_id: str, refs: dict[str, SealedRef], keystore: KeyStore,
                 catalogue: Catalogue | None = None) -> dict[str, Any]:
    """{path: sealed ref} -> {path: plain value or None}, with one key-store query."""
    catalogue = catalogue or load_catalogue()
    if not refs:
        return {}
    opened = [(path, r, _field(catalogue, r.event_type, r.dotted), datetime.fromisoformat(r.at))
              for path, r in refs.items()]
    wanted = {KeyRef(subject_id, f.category, key_period(f.category, at))
              for _, _, f, at in opened}
    lookup = lookup_from(keystore.keys_for_reading(wanted))
    return {path: open_field(r.event_type, r.event_id, subject_id, at, field,
                             base64.b64decode(r.value), lookup)
            for path, r, field, at in opened}


def _nest(flat: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        sub = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(name + ".")}
        out[name] = sub or flat.get(name)
    return out


def consent_status(entry: dict[str, Any], now: datetime, months: int) -> str:
    """A choice's status at ``now``: granted and refused choices expire after ``months``."""
    if entry["status"] in ("granted", "refused") and \
            now >= add_months(datetime.fromisoformat(entry["at"]), months):
        return "expired"
    return entry["status"]


def _authorisations(doc: dict[str, Any], now: datetime, policy: Policy
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """The authorisations shown, and until when the sharing records are kept (if ended)."""
    until = sharing_records_until_view(doc, policy)
    if until is not None and now >= until:
        return [], format_instant(until)
    shown = [{"recipient": r, **{k: a[k] for k in ("categories", "purpose", "since")}}
             for r, a in sorted(doc["authorisations"].items())]
    return shown, format_instant(until) if until else None


def render(doc: dict[str, Any], keystore: KeyStore | None, now: datetime, policy: Policy,
           include_retained: bool = False, personal: bool = True) -> dict[str, Any]:
    """The view of cli.md: subject_id, status, identity, contact, last_connection, consents,
    authorisations (plus consent details, holds and counts). With ``personal`` false nothing
    is decrypted (no key store is needed) and every personal field reads as null."""
    subject = doc["subject_id"]
    readable = (doc["status"] == "active" or include_retained) and personal
    conn = doc.get("last_connection")
    refs = personal_refs(doc) if readable else {}
    if conn and doc["status"] == "active" and personal:
        refs.update({"conn." + k: v for k, v in connection_refs(doc).items()})
    plain = decrypt_refs(subject, refs, keystore)
    personal = {k: v for k, v in plain.items() if not k.startswith("conn.")}
    identity = _nest(personal, PERSONAL_GROUPS["identity"]) if readable and personal else None
    contact = _nest(personal, PERSONAL_GROUPS["contact"]) if readable and personal else None
    last_connection = None
    if conn:
        cfields = {k[5:]: v for k, v in plain.items() if k.startswith("conn.")}
        last_connection = {"at": conn["at"], "event_id": conn["event_id"],
                           **_nest(cfields, ("ip", "location", "user_agent", "cookie_id"))}
    months = policy.consent_validity_months
    authorisations, sharing_until = _authorisations(doc, now, policy)
    return {
        "subject_id": subject,
        "status": doc["status"],
        "identity": identity,
        "contact": contact,
        "last_connection": last_connection,
        "consents": {p: consent_status(c, now, months) for p, c in sorted(doc["consents"].items())},
        "authorisations": authorisations,
        "sharing_records_until": sharing_until,
        "consent_details": doc["consents"],
        "holds": sorted(doc["holds"]),
        "documents": len(doc["documents"]),
        "counts": doc["counts"],
        "created_at": doc["created_at"],
        "deleted_at": doc["deleted_at"],
        "erased_at": doc["erased_at"],
    }


def summary(doc: dict[str, Any], now: datetime, policy: Policy) -> dict[str, Any]:
    """The view with no personal field at all, nothing decrypted: what may be shown before a
    case reference is given (status, consents, authorisations, holds, documents, dates)."""
    shown = render(doc, None, now, policy, personal=False)
    conn = doc.get("last_connection")
    return {**{k: v for k, v in shown.items() if k not in ("identity", "contact")},
            "last_connection": {"at": conn["at"], "event_id": conn["event_id"]} if conn else None,
            "holds": [{"case_ref": c, **h} for c, h in sorted(doc["holds"].items())],
            "documents": [dict(d) for d in doc["documents"]]}


DETAILS = ("consent_details", "counts", "created_at", "deleted_at", "erased_at",
           "sharing_records_until")


def brief(answer: dict[str, Any]) -> dict[str, Any]:
    """The view without its details: what a person reads in the text output."""
    return {k: v for k, v in answer.items() if k not in DETAILS}


def prune(value: Any) -> Any:
    """Drop null leaves; an object left empty becomes None."""
    if isinstance(value, dict):
        out = {k: p for k, v in value.items() if (p := prune(v)) is not None}
        return out or None
    return value


def readable_only(rendered: dict[str, Any]) -> dict[str, Any]:
    """Leave out every personal field that did not decrypt (its key is gone)."""
    for group in ("identity", "contact"):
        rendered[group] = prune(rendered.get(group))
    conn = rendered.get("last_connection")
    if conn:
        fields = {k: v for k, v in conn.items() if k not in ("at", "event_id")}
        rendered["last_connection"] = {"at": conn["at"], "event_id": conn["event_id"],
                                       **(prune(fields) or {})}
    return rendered
