"""The web service (http.md): the HTTP API that website services publish through and that
compliance scripts ask, on the same functions as the command line.

One FastAPI application (`app.create_app`), served by uvicorn (`server.serve`): by
`registre serve` alone, by `registre run` as a child process (``python -m registre.web``), or
as its own container in `deploy/`. A router per area (`routes/`), so that other areas (the
data-subject requests, the console) add theirs beside them.
"""
