"""How many processor workers `registre run` starts without --workers: one per core, at most
one per partition of the ledger topic (schemas/topics.json), at least one."""

from __future__ import annotations

import pytest

from events.catalogue import load_topics
from registre.supervisor import default_workers

PARTITIONS = next(t["partitions"] for t in load_topics() if t["role"] == "ledger")


@pytest.mark.parametrize(("cores", "workers"), [
    (1, 1), (2, 2), (PARTITIONS, PARTITIONS), (PARTITIONS + 10, PARTITIONS)])
def test_one_worker_per_core_up_to_the_partitions(cores: int, workers: int) -> None:
    assert default_workers(cores) == workers


def test_an_unknown_core_count_still_runs_one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert default_workers() == 1
