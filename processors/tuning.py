"""Two settings of a worker process: how long a fetch may wait for data (one transport setting
Faust does not expose), and when the cycle collector runs.

faust-streaming creates its aiokafka consumer with ``fetch_max_wait_ms=1500``. The embedded
broker (Tansu) answers a fetch only when that wait has passed for partitions without new data,
even when other partitions have some, so under a steady load every record waited ~0.4-0.75 s
(measured: p50 374 ms / p99 750 ms with 1500 ms, p50 27 ms / p99 56 ms with 100 ms). A short
wait costs a few more idle fetches on Apache Kafka, which is cheap.
"""

from __future__ import annotations

import gc
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

FETCH_MAX_WAIT_MS = 100
_original = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when its fetcher starts
    return consumer


def apply(fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Install the shorter fetch wait for every Faust worker consumer of this process."""
    global FETCH_MAX_WAIT_MS
    FETCH_MAX_WAIT_MS = fetch_max_wait_ms
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


# A worker's heap is mostly what it imported and built at start (Faust, mode, aiokafka, the
# catalogue, the app); a batch then makes ~100k short-lived containers (the views read, folded
# and written) that reference counting frees, not the cycle collector. With the default
# thresholds (700, 10, 10) the collector ran ~2,700 times and traversed the whole heap 22 times
# per 60k events: 3.7 s of the worker's 25.4 s of CPU (15 %), against 4 % for the bare counter.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Leave what exists now out of every collection (`gc.freeze`) and collect young objects
    less often; cycles are still collected. Call once the worker is built, before it runs."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
