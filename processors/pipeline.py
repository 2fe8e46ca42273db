"""One batch applied at a time, while the stream goes on taking the next one.

The worker's agent hands what it takes to a `Pipeline` and returns to the stream at once: the
stream keeps reading (Faust's per-event work) while the batch before waits for PostgreSQL.
What arrives meanwhile is held, and becomes the next batch as soon as the running one ends,
up to ``batch_size`` items: batches stay full under a backlog instead of being cut by the
stream's timer. Only one batch runs at a time, so a batch reads what the one before wrote.

The pipeline knows nothing of Faust or PostgreSQL: ``run`` applies a batch and acknowledges
it, so nothing is acknowledged before its batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("registre.processors")
T = TypeVar("T")


class Pipeline(Generic[T]):
    """Runs ``run(batch)`` for one batch at a time; holds what is added meanwhile."""

    def __init__(self, run: Callable[[list[T]], Awaitable[None]], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self._run = run
        self._size = batch_size
        self._held: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def held(self) -> int:
        """Items waiting for the running batch to end."""
        return len(self._held)

    async def add(self, items: Sequence[T]) -> None:
        """Hold ``items`` and start a batch if none runs. Waits while a full batch is held
        (the stream then stops taking); raises what an earlier batch raised."""
        self._raise_failure()
        self._held.extend(items)
        if self._task is None and self._held:
            self._start()
        while len(self._held) >= self._size and self._task is not None:
            await asyncio.wait({self._task})  # not cancelled if the caller is
            self._raise_failure()

    async def close(self) -> None:
        """Stop: the running batch is cancelled (its transaction rolls back and nothing of it
        is acknowledged, as when the worker stops mid-batch); what is held is dropped unacked,
        so it is read again (from PostgreSQL's positions when the worker starts)."""
        task, self._task = self._task, None
        self._held.clear()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start(self) -> None:
        batch, self._held = self._held[:self._size], self._held[self._size:]
        self._task = asyncio.ensure_future(self._run(batch))
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task is not self._task:  # closed meanwhile
            return
        self._task = None
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("batch failed; the agent stops at its next batch", error=type(exc).__name__)
            self._failure = exc
            return
        if self._held:
            self._start()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
