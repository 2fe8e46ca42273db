"""The demo's first chapters: a website day published and applied, two customer views, and
what an analyst sees."""

from __future__ import annotations

import time

import psycopg

from registre.demo.data import website_day
from registre.demo.stage import Demo, types


def website(demo: Demo) -> None:
    demo.events = website_day()
    subjects = {e["subject_id"] for e in demo.events}
    t = time.monotonic()
    demo.publish(demo.events)
    demo.say(f"published a website day: {len(demo.events)} events about {len(subjects)} people"
             f" in {time.monotonic() - t:.1f}s (validated, personal fields encrypted, Avro)")
    t = time.monotonic()
    demo.wait()
    demo.say(f"the processors applied everything in {time.monotonic() - t:.1f}s")
    active = demo.pick(lambda evs: {"ConsentWithdrawn", "SharingAuthorised"} <= types(evs)
                       or {"ConsentWithdrawn", "ConnectionRecorded"} <= types(evs))
    demo.show(f"customer view of {active} (consent withdrawn during the day)", demo.view(active))
    deleted = demo.pick(lambda evs: "AccountDeleted" in types(evs))
    demo.show(f"customer view of {deleted} (deleted their account)", demo.view(deleted))


def analysts(demo: Demo) -> None:
    """What an analyst sees: aggregates only, through the analyst login."""
    url = demo.settings.runtime().get("analyst_database_url")
    if not url:
        return
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT purpose, asked, granted, consent_rate, suppressed FROM consent_daily"
            " ORDER BY day, purpose").fetchall()
        try:
            conn.execute("SELECT count(*) FROM projections.customer_view")
            refused = "no"
        except psycopg.errors.InsufficientPrivilege:
            refused = "yes (permission denied)"
    demo.show("analyst: consent rate per purpose on 2026-03-03 (analytics.consent_daily)",
              [{"purpose": p, "asked": a, "granted": g, "rate": str(r), "suppressed": sup}
               for p, a, g, r, sup in rows])
    demo.say(f"the analyst login reading the customer view is refused: {refused}")
