"""The worker's pipeline (`processors.pipeline`): one batch at a time, what arrives meanwhile
held and run next, full batches, back-pressure, failures surfaced, stop without finishing."""

from __future__ import annotations

import asyncio

import pytest

from processors.pipeline import Pipeline


class Recorder:
    """A batch runner that records its batches and waits until each is released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.fail_on: int | None = None

    async def __call__(self, batch: list[int]) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.batches.append(batch)
            await self.release.wait()
            if self.fail_on is not None and self.fail_on in batch:
                raise RuntimeError("boom")
        finally:
            self.running -= 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_what_arrives_during_a_batch_is_held_and_becomes_the_next_full_batch() -> None:
    async def scenario() -> Recorder:
        run = Recorder()
        pipe = Pipeline(run, batch_size=4)
        await pipe.add([1])  # starts at once: nothing else runs
        await settle()
        await pipe.add([2, 3])  # arrive while batch [1] waits
        more = asyncio.ensure_future(pipe.add([4, 5, 6]))  # a full batch held: it waits
        await settle()
        assert run.batches == [[1]] and pipe.held == 5
        run.release.set()
        await asyncio.wait_for(more, 1)
        await settle()
        await pipe.close()
        return run

    run = asyncio.run(scenario())
    assert run.batches == [[1], [2, 3, 4, 5], [6]]  # in order, never above the batch size
    assert run.most_at_once == 1


def test_held_items_run_when_the_batch_before_ends_though_nothing_more_arrives() -> None:
    async def scenario() -> list[list[int]]:
        run = Recorder()
        pipe = Pipeline(run, batch_size=10)
        await pipe.add([1, 2])
        await settle()
        await pipe.add([3])  # a quiet stream: this is the last item for a while
        run.release.set()
        await settle()
        assert pipe.held == 0
        await pipe.close()
        return run.batches

    assert asyncio.run(scenario()) == [[1, 2], [3]]


def test_add_waits_while_a_full_batch_is_held() -> None:
    async def scenario() -> tuple[bool, bool]:
        run = Recorder()
        pipe = Pipeline(run, batch_size=2)
        await pipe.add([1])
        adding = asyncio.ensure_future(pipe.add([2, 3]))  # a full batch behind a running one
        await settle()
        blocked = not adding.done()
        run.release.set()
        await asyncio.wait_for(adding, 1)
        await settle()
        await pipe.close()
        return blocked, adding.done()

    assert asyncio.run(scenario()) == (True, True)


def test_a_failed_batch_is_raised_to_the_agent_and_nothing_held_runs_after_it() -> None:
    async def scenario() -> Recorder:
        run = Recorder()
        run.fail_on = 1
        pipe = Pipeline(run, batch_size=5)
        await pipe.add([1])
        await settle()
        await pipe.add([2])
        run.release.set()
        await settle()
        with pytest.raises(RuntimeError, match="boom"):
            await pipe.add([3])
        await pipe.close()
        return run

    run = asyncio.run(scenario())
    assert run.batches == [[1]]


def test_close_cancels_the_running_batch_and_drops_what_is_held() -> None:
    async def scenario() -> tuple[Recorder, int]:
        run = Recorder()
        pipe = Pipeline(run, batch_size=5)
        await pipe.add([1])
        await settle()
        await pipe.add([2])
        await pipe.close()
        run.release.set()
        await settle()
        return run, pipe.held

    run, held = asyncio.run(scenario())
    assert run.batches == [[1]] and run.running == 0 and held == 0


def test_the_batch_size_must_be_positive() -> None:
    async def noop(batch: list[int]) -> None:
        return None

    with pytest.raises(ValueError, match="batch_size"):
        Pipeline(noop, batch_size=0)
