"""A work queue of resources, reconciled by a fixed pool of workers: what makes the operator
event-driven and idle when nothing changes.

Watch events of DatabaseMigrations, of their Jobs and of those Jobs' pods put the resource's
key on the queue; a worker takes it and reconciles it once. A key is never reconciled by two
workers at once: an event that arrives while its key is being reconciled marks it to run again
right after. A decision that needs time to pass (a retry after backoff) asks for a delayed
enqueue, which is a timer handle, not a task. One resync task enqueues every key once a minute
as a safety net for a lost event. Nothing exists per resource while it is idle.

Work runs only while `active` is set: kopf stops its daemons when peering pauses the operator
(another replica is active), and the one leadership daemon clears it then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

Key = tuple[str, str]  # (namespace, name)
Reconcile = Callable[[Key], Awaitable[float | None]]  # returns the delay of the next pass, if any

log = logging.getLogger("migrate_safe.operator")
RESYNC_SECONDS = 60.0
ERROR_DELAY = 5.0


class Controller:
    def __init__(self, reconcile: Reconcile, keys: Callable[[], Iterable[Key]], workers: int):
        self._reconcile = reconcile
        self._keys = keys
        self._workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.active = asyncio.Event()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, handle in self._timers.values():
            handle.cancel()

    def activate(self) -> None:
        """This replica may work (not paused by peering): look at everything once."""
        self.active.set()
        for key in self._keys():
            self.enqueue(key)

    def deactivate(self) -> None:
        self.active.clear()

    def enqueue(self, key: Key, after: float = 0.0) -> None:
        """Reconcile `key` as soon as a worker is free, or after `after` seconds."""
        if after > 0:
            self._later(key, after)
            return
        if key in self._running:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _later(self, key: Key, after: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + after
        current = self._timers.get(key)
        if current is not None and current[0] <= due:
            return  # an earlier pass is already planned; it will plan the next one
        if current is not None:
            current[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._due, key))

    def _due(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            await self.active.wait()
            self._queued.discard(key)
            self._running.add(key)
            try:
                after = await self._reconcile(key)
            except Exception:  # a defect or an API outage: the key is retried, never lost
                log.exception("%s/%s: reconcile failed; retrying in %ss", *key, ERROR_DELAY)
                after = ERROR_DELAY
            finally:
                self._running.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)
            elif after is not None:
                self.enqueue(key, after)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            if self.active.is_set():
                for key in self._keys():
                    self.enqueue(key)
