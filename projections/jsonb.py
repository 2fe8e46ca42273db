"""JSON (de)serialisation with orjson: the view documents are written and read on every
batch, and the standard library's json was a tenth of the processors' time."""

from __future__ import annotations

import orjson
from psycopg.types.json import set_json_dumps, set_json_loads


def use_fast_json() -> None:
    """Make psycopg dump and load JSON/JSONB with orjson, for this process."""
    set_json_dumps(orjson.dumps)
    set_json_loads(orjson.loads)
