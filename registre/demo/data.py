"""A realistic day of a French website's traffic, as events in canonical JSON form.

Deterministic for a seed: sign-ups (and a few older accounts), logins with IPs and locations,
consent banners with grants and refusals, withdrawals, sharing authorisations and revocations,
disclosures to processors and partners (a few without authorisation), invoices and quotes,
and a few deletions. Addresses and IPs use reserved documentation ranges.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

FIRST = ["Camille", "Louise", "Léa", "Manon", "Chloé", "Inès", "Jade", "Emma", "Lucas", "Hugo",
         "Louis", "Gabriel", "Arthur", "Jules", "Nathan", "Théo", "Zoé", "Anaïs", "Mathis", "Noé"]
LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
        "Leroy", "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David",
        "Bertrand", "Roux", "Vincent", "Fournier"]
STREETS = ["rue des Lilas", "avenue Jean Jaurès", "boulevard Voltaire", "rue de la Paix",
           "place du Marché", "rue Victor Hugo", "allée des Tilleuls", "chemin des Vignes"]
CITIES = [("Paris", "75011", 48.8566, 2.3522), ("Lyon", "69003", 45.764, 4.8357),
          ("Marseille", "13006", 43.2965, 5.3698), ("Toulouse", "31000", 43.6047, 1.4442),
          ("Nantes", "44000", 47.2184, -1.5536), ("Lille", "59000", 50.6292, 3.0573),
          ("Bordeaux", "33000", 44.8378, -0.5792), ("Strasbourg", "67000", 48.5734, 7.7521)]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "Mozilla/5.0 (iPhone) Safari/19",
          "Mozilla/5.0 (Windows NT 10.0) Chrome/150.0", "Mozilla/5.0 (Android 16) Chrome/150.0"]
CONSENTED = ["optimisation", "personalised_ads", "marketing", "third_party_cookies"]
PARTNER = "partenaire-voyages.example"
PROCESSORS = [("support-desk.example", "assistance"), ("ads-network.example", "advertising")]
NOTICE = "2026-01"


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


class _Day:
    def __init__(self, seed: int, day: date) -> None:
        self.rng = random.Random(seed)
        self.start = datetime.combine(day, time(6, 0), UTC)
        self.events: list[dict[str, Any]] = []

    def at(self, after: datetime | None = None, within_hours: float = 16.0) -> datetime:
        base = after or self.start
        span = max(60.0, (self.start + timedelta(hours=17) - base).total_seconds())
        return base + timedelta(seconds=self.rng.uniform(30, min(span, within_hours * 3600)))

    def add(self, kind: str, subject: str, when: datetime, data: dict[str, Any],
            source: str) -> datetime:
        offset = "+01:00"  # the website logs in Paris time (CET in March)
        local = (when + timedelta(hours=1)).replace(tzinfo=None).isoformat(timespec="seconds")
        self.events.append({
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": kind, "subject_id": subject, "occurred_at": local + offset,
            "source": source, "data": data})
        return when

    def ip(self) -> str:
        if self.rng.random() < 0.25:
            return f"2001:db8::{self.rng.randrange(1, 0xffff):x}"
        net = self.rng.choice(["192.0.2", "198.51.100", "203.0.113"])
        return f"{net}.{self.rng.randrange(1, 255)}"

    def account(self, subject: str, when: datetime) -> dict[str, Any]:
        r = self.rng
        city, postal, _, _ = r.choice(CITIES)
        first, last = r.choice(FIRST), r.choice(LAST)
        phone = " ".join(str(r.randrange(10, 99)) for _ in range(4))
        return {"gender": r.choice(["female", "male", "other", "undisclosed"]),
                "last_name": last, "first_name": first,
                "email": f"{_ascii(first)}.{_ascii(last)}.{subject[-4:]}@courriel.example",
                "phone": f"+33 6 {phone}" if r.random() < 0.6 else None,
                "postal_address": {"line1": f"{r.randrange(1, 120)} {r.choice(STREETS)}",
                                   "line2": None, "postal_code": postal, "city": city,
                                   "country": "FR"},
                "over_15": True, "notice_version": NOTICE}

    def connection(self, subject: str, when: datetime, cookie: str) -> datetime:
        city, _, lat, lon = self.rng.choice(CITIES)
        loc = ({"latitude": round(lat + self.rng.uniform(-.05, .05), 4),
                "longitude": round(lon + self.rng.uniform(-.05, .05), 4),
                "city": city, "country": "FR"} if self.rng.random() < 0.8 else None)
        return self.add("ConnectionRecorded", subject, when,
                        {"ip": self.ip(), "location": loc, "user_agent": self.rng.choice(AGENTS),
                         "cookie_id": cookie}, "website-auth")

    def banner(self, subject: str, when: datetime) -> datetime:
        granted = [p for p in CONSENTED if self.rng.random() < 0.55]
        refused = [p for p in CONSENTED if p not in granted]
        mech = self.rng.choice(["banner_ok", "settings_page"])
        if granted:
            when = self.add("ConsentGiven", subject, when, {"purposes": granted,
                            "notice_version": NOTICE, "mechanism": mech}, "website-consent")
        if refused:
            when = self.add("ConsentRefused", subject, when + timedelta(seconds=1),
                            {"purposes": refused, "notice_version": NOTICE, "mechanism": mech},
                            "website-consent")
        if granted and self.rng.random() < 0.15:
            when = self.add("ConsentWithdrawn", subject, self.at(when),
                            {"purposes": [self.rng.choice(granted)], "mechanism": "settings_page"},
                            "website-consent")
        return when


def website_day(seed: int = 3, subjects: int = 300, day: date = date(2026, 3, 3)) -> list[dict]:
    """Events of one day, in time order."""
    d = _Day(seed, day)
    r = d.rng
    for i in range(subjects):
        if r.random() < 0.2:  # a visitor without an account: cookie consent and a visit
            subject = f"visitor-{i:05d}"
            when = d.banner(subject, d.at())
            d.connection(subject, when + timedelta(seconds=2), f"ck-{i:05d}")
            continue
        subject = f"acc-{i:06d}"
        older = r.random() < 0.3  # signed up in an earlier month: only today's facts follow
        when = d.at()
        if older:
            created = d.start - timedelta(days=r.randrange(20, 400))
            d.add("AccountCreated", subject, created, d.account(subject, created),
                  "website-accounts")
        else:
            when = d.add("AccountCreated", subject, when, d.account(subject, when),
                         "website-accounts")
        when = d.banner(subject, when + timedelta(seconds=5))
        for _ in range(r.randrange(1, 4)):
            when = d.connection(subject, d.at(when, 4), f"ck-{i:05d}")
        if r.random() < 0.3:
            when = d.add("SharingAuthorised", subject, d.at(when, 2),
                         {"recipient": PARTNER, "categories": ["identity", "contact"],
                          "purpose": "service"}, "website-partners")
            when = d.add("DataShared", subject, d.at(when, 1),
                         {"recipient": PARTNER, "recipient_kind": "third_party",
                          "service": "account_creation", "categories": ["identity", "contact"],
                          "country": "FR", "basis": "authorisation"}, "website-partners")
            if r.random() < 0.2:
                when = d.add("SharingRevoked", subject, d.at(when, 1), {"recipient": PARTNER},
                             "website-partners")
                if r.random() < 0.5:  # a disclosure after revocation: flagged unauthorised
                    when = d.add("DataShared", subject, d.at(when, 1),
                                 {"recipient": PARTNER, "recipient_kind": "third_party",
                                  "service": "other", "categories": ["contact"],
                                  "country": "FR", "basis": "authorisation"}, "website-partners")
        if r.random() < 0.4:
            recipient, service = r.choice(PROCESSORS)
            when = d.add("DataShared", subject, d.at(when, 2),
                         {"recipient": recipient, "recipient_kind": "processor",
                          "service": service, "categories": ["identity", "contact"],
                          "country": r.choice(["FR", "IE", "DE"]),
                          "basis": "processor_contract"}, "website-support")
        if r.random() < 0.2:
            when = d.add("DocumentIssued", subject, d.at(when, 2),
                         {"kind": r.choice(["invoice", "invoice", "quote", "contract"]),
                          "document_ref": f"DOC-2026-{i:06d}"}, "website-billing")
        if r.random() < 0.04:
            d.add("AccountDeleted", subject, d.at(when, 2), {"requested_by": "subject"},
                  "website-accounts")
    d.events.sort(key=lambda e: (e["occurred_at"], e["subject_id"]))
    return d.events
