"""`registre demo`: the whole story on the embedded default, start to finish.

It runs `registre run` in REGISTRE_HOME/demo (wiped first), publishes a website day through
the publisher API, waits for the processors, shows what the ledger knows, answers the
compliance questions and takes a data-subject request to its answer, prints the compliance
console's address and a login for it, then stops everything cleanly (with ``serve``, only
once Ctrl-C is pressed). Each chapter is a module of its own.
"""

from __future__ import annotations

from registre.demo import audit, console, erasure, story
from registre.demo.stage import Demo
from registre.settings import Settings


def run_demo(settings: Settings, serve: bool = False) -> int:
    demo = Demo(settings)
    try:
        demo.start()
        story.website(demo)
        story.analysts(demo)
        erasure.chapter(demo)
        audit.chapter(demo)
        email = console.requests(demo)
        console.console(demo, email, serve)
        if serve:
            demo.serve_until_interrupted()
    finally:
        demo.stop()
    demo.say("stopped cleanly: broker, database and processors are down")
    return 0
