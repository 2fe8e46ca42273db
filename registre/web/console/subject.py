"""The subject page: a person's whole story, and the actions on it.

Without a case reference it shows what holds no personal field (status, consents,
authorisations, holds, documents, requests) and asks for one. With ``?case=REF`` the desk
records each read in the access log under the logged-in person's name and the case *before*
decrypting, then the page shows the current view, the timeline as sentences (decrypted where
the key exists, "destroyed on ..." where not), consent at any instant with its proof, the
disclosures (unauthorised ones flagged), the erasure record and its certificates, the view as
of any instant, the export, and the forms of the actions (hold, release, request, erasure).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from events.catalogue import load_catalogue
from registre.output import to_json
from registre.services.audit import RecordsPastRetention, purposes
from registre.services.compliance import Compliance
from registre.web.console import dates, sentences
from registre.web.console.actions import (
    Doc,
    act,
    case_of,
    desk,
    ordered,
    subject_id,
    subject_page,
)
from registre.web.console.session import Officer, Poster, Reader, Refused
from registre.web.console.views import ConsoleRoute, from_elsewhere, page

router = APIRouter(prefix="/console/subjects", route_class=ConsoleRoute, include_in_schema=False)
Text = Annotated[str, Form(max_length=1000)]
Optional = Annotated[str | None, Query(max_length=200)]
_catalogue = load_catalogue()
PERSONAL = {name: [f.dotted.split(".", 1)[1] for f in t.pii]
            for name, t in _catalogue.types.items()}


def symbols(name: str) -> list[str]:
    return list(_catalogue.named_types[f"registre.events.{name}"]["symbols"])


def choices(found: Compliance) -> Doc:
    """The values the forms offer (from the schemas and the loaded policy)."""
    return {"purposes": list(purposes()), "hold_reasons": symbols("HoldReason"),
            "categories": symbols("Category"), "kinds": symbols("RequestKind"),
            "channels": symbols("RequestChannel"), "outcomes": symbols("RequestOutcome"),
            "requested_by": symbols("RequestedBy"),
            "extension_months": list(range(1, found.policy.request_extension_max_months + 1))}


def _disclosures(found: Compliance, subject: str) -> Doc:
    try:
        return {"disclosures": found.disclosures(subject), "withheld": None}
    except RecordsPastRetention as exc:
        return {"disclosures": [], "withheld": str(exc)}


def case_sections(found: Compliance, subject: str, case: str, purpose: str | None,
                  at: datetime | None, as_of: datetime | None) -> Doc:
    """Everything that decrypts, each read recorded by the desk first."""
    return {"view": found.view(subject, case),
            "timeline": found.timeline(subject, case),
            "disclosures": _disclosures(found, subject),
            "erasure": found.erasure(subject),
            "consent": found.consent(subject, purpose, at) if purpose and at else None,
            "as_of": found.as_of(subject, as_of, case) if as_of else None}


def _instant(value: str | None, field: str) -> datetime | None:
    return dates.from_field(value, field) if value and value.strip() else None


def _view_model(found: Compliance, doc: Doc) -> Doc:
    """What the template needs beyond the documents: sentences, choices, defaults."""
    now = found.ctx.clock()
    model = {"choices": choices(found), "now_local": dates.local_value(now), "lines": [],
             "requests": ordered(doc["requests"])}
    if doc.get("timeline"):
        flagged = {d["event_id"]: d.get("reason") or "no active authorisation"
                   for d in doc["disclosures"]["disclosures"] if not d["authorised"]}
        model["lines"] = sentences.lines(doc["timeline"], flagged, PERSONAL)
        model["unauthorised"] = len(flagged)
    shown = {"view": doc.get("view"), "as_of": (doc.get("as_of") or {}).get("view")}
    for name, view in shown.items():
        model[f"{name}_groups"] = groups(view or {})
    return model


def groups(view: Doc) -> list[tuple[str, list[sentences.Field]]]:
    """The personal groups of a view that hold something, as titled rows (empty: none)."""
    connection = {k: v for k, v in (view.get("last_connection") or {}).items()
                  if k != "event_id"}
    found = [("Identity", sentences.rows(view.get("identity"))),
             ("Contact", sentences.rows(view.get("contact"))),
             ("Last connection", sentences.rows(connection))]
    return [(title, rows) for title, rows in found
            if any(r.label != "when" for r in rows)]


def confirm_first(request: Request, officer: Officer, subject: str, case: str) -> Response:
    """A read that another site's link asks for is confirmed first (it would be recorded in
    the access log under the officer's name): one click on this console goes on."""
    if request.query_params.get("format") == "json":
        raise Refused(403, "a read under a case is not answered to a request from another "
                           "site")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return page(request, officer, "confirm.html", {"subject_id": subject, "case_ref": case},
                {"target": target}, nav="search")


@router.get("/{subject}")
def subject_view(request: Request, subject: str, officer: Reader,
                 case: Optional = None, purpose: Optional = None, at: Optional = None,
                 asof: Optional = None) -> Response:
    subject, case = subject_id(subject), case_of(case)
    if case and from_elsewhere(request):
        return confirm_first(request, officer, subject, case)
    found = desk(request, officer)
    doc: Doc = {"subject_id": subject, "case_ref": case, "summary": found.summary(subject),
                "requests": found.requests(None, subject)}
    if purpose is not None and purpose not in purposes():
        raise Refused(422, f"purpose: expected one of {', '.join(purposes())}")
    if case:
        doc.update(case_sections(found, subject, case, purpose, _instant(at, "at"),
                                 _instant(asof, "as of")))
    view = {**_view_model(found, doc), "purpose": purpose, "at": at or "", "asof": asof or ""}
    return page(request, officer, "subject.html", doc, view, nav="search")


@router.get("/{subject}/export")
def export(request: Request, subject: str, officer: Reader, case: Optional = None) -> Response:
    """The art. 15/20 document as a download (recorded in the access log as an export)."""
    subject, case = subject_id(subject), case_of(case)
    if not case:
        raise Refused(422, "case: a case reference is required to export")
    if from_elsewhere(request):
        return confirm_first(request, officer, subject, case)
    doc = desk(request, officer).export(subject, case)
    stamp = dates.instant(doc["generated_at"]).strftime("%Y%m%dT%H%M%SZ")
    return Response(to_json(doc), media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="registre-export-{subject}-{stamp}.json"'})


# --- actions --------------------------------------------------------------------------------


@router.post("/{subject}/holds")
def place_hold(request: Request, subject: str, officer: Poster, hold_case: Text, reason: Text,
               case: Annotated[str, Form(max_length=200)] = "",
               categories: Annotated[list[str], Form()] = []) -> Response:  # noqa: B006
    subject = subject_id(subject)
    back = subject_page(subject, case_of(case), "holds")
    return act(request, officer, back,
               lambda d: d.place_hold(subject, hold_case.strip(), reason, categories or None),
               lambda a: f"Legal hold {a['case_ref']} placed on {subject}: LegalHoldPlaced "
                         f"published (event {a['event_id'][:8]}).")


@router.post("/{subject}/holds/release")
def release_hold(request: Request, subject: str, officer: Poster, hold_case: Text,
                 case: Annotated[str, Form(max_length=200)] = "") -> Response:
    subject = subject_id(subject)
    back = subject_page(subject, case_of(case), "holds")
    return act(request, officer, back, lambda d: d.release_hold(subject, hold_case),
               lambda a: f"Legal hold {a['case_ref']} released on {subject}: LegalHoldReleased "
                         f"published (event {a['event_id'][:8]}).")


@router.post("/{subject}/requests")
def open_request(request: Request, subject: str, officer: Poster, kind: Text, channel: Text,
                 case: Annotated[str, Form(max_length=200)] = "",
                 identity_verified: Annotated[str | None, Form(max_length=10)] = None,
                 received_at: Annotated[str | None, Form(max_length=40)] = None) -> Response:
    subject = subject_id(subject)
    back = subject_page(subject, case_of(case), "requests")
    return act(request, officer, back,
               lambda d: d.open_request(subject, kind, channel, identity_verified == "yes",
                                        _instant(received_at, "received at")),
               lambda a: f"{sentences.word(a['kind']).capitalize()} request "
                         f"{a['request_id'][:8]} recorded for {subject}, received "
                         f"{dates.both(a['received_at'])}: due {dates.both(a['deadline'])}.")


@router.post("/{subject}/erasure")
def request_erasure(request: Request, subject: str, officer: Poster, requested_by: Text,
                    case: Annotated[str, Form(max_length=200)] = "",
                    confirm: Annotated[str | None, Form(max_length=10)] = None) -> Response:
    subject = subject_id(subject)
    back = subject_page(subject, case_of(case), "erasure")

    def erase(found: Compliance) -> Doc:
        if confirm != "yes":
            raise Refused(422, "confirm: tick the box to confirm the erasure")
        return found.request_erasure(subject, requested_by)

    return act(request, officer, back, erase,
               lambda a: f"Erasure requested for {subject}: ErasureRequested published (event"
                         f" {a['event_id'][:8]}); the keys the policy does not keep are "
                         "destroyed.")
