"""One router per area of the API: health, events, subjects, ledger-wide questions, data-subject
requests (the console's routers are in `registre.web.console`).

Routes stay thin: parse, authorise (`registre.web.auth.require`), call the compliance desk or a
service, return its document as it is (the CLI's ``--json`` of the same question).
"""
