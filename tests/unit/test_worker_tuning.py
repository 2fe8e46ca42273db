"""The worker process's collector settings (`processors.heap.tune_gc`): what exists before
it runs is left out of collections, young objects are collected less often, and cycles made
afterwards are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from processors.heap import WORKER, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: reference counting alone never frees it


def test_tune_gc_freezes_the_start_heap_and_raises_the_thresholds(restored_gc: None) -> None:
    tune_gc()
    assert gc.get_threshold() == WORKER
    assert gc.get_freeze_count() > 1000  # the imported modules, at least


def test_cycles_made_after_tuning_are_still_collected(restored_gc: None) -> None:
    tune_gc()
    node = Node()
    ref = weakref.ref(node)
    del node
    assert ref() is not None  # not yet: 50,000 allocations before the young generation runs
    gc.collect()
    assert ref() is None
