"""One router per area of the API: health, events, subjects, ledger-wide questions.

Routes stay thin: parse, authorise (`registre.web.auth.require`), call the compliance desk or a
service, return its document as it is (the CLI's ``--json`` of the same question).
"""
