"""`registre demo`: the whole story on the embedded default, start to finish.

It runs `registre run` in REGISTRE_HOME/demo (wiped first), publishes a website day through
the publisher API, waits for the processors, shows what the ledger knows and answers the
compliance questions, then stops everything cleanly. Each chapter is a module of its own.
"""

from __future__ import annotations

from registre.demo import audit, erasure, story
from registre.demo.stage import Demo
from registre.settings import Settings


def run_demo(settings: Settings) -> int:
    demo = Demo(settings)
    try:
        demo.start()
        story.website(demo)
        story.analysts(demo)
        erasure.chapter(demo)
        audit.chapter(demo)
    finally:
        demo.stop()
    demo.say("stopped cleanly: broker, database and processors are down")
    return 0
