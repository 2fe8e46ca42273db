"""How many processor workers `registre run` starts without --workers: one per core it may run
on, at most one per partition of the ledger topic (schemas/topics.json), at least one."""

from __future__ import annotations

import pytest

from events.catalogue import topic_of
from registre.supervisor import default_workers

PARTITIONS = topic_of("ledger")["partitions"]


@pytest.mark.parametrize(("cores", "workers"), [
    (1, 1), (2, 2), (PARTITIONS, PARTITIONS), (PARTITIONS + 10, PARTITIONS)])
def test_one_worker_per_core_up_to_the_partitions(cores: int, workers: int) -> None:
    assert default_workers(cores) == workers


def test_the_cores_are_those_the_process_may_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {3}, raising=False)
    assert default_workers() == 1  # a container limited to one core of 64


def test_without_affinity_or_a_core_count_one_worker_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr("os.sched_getaffinity", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert default_workers() == 1
