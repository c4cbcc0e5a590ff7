"""The operator's work queue: one pass per resource at a time, events during a pass coalesce
into one more pass, delayed passes are timers, and nothing runs while the replica is paused."""

from __future__ import annotations

import asyncio
from collections import Counter

from migrate_safe.k8s.controller import Controller, Key


class Recorder:
    def __init__(self, hold: float = 0.05, after: float | None = None) -> None:
        self.hold, self.after = hold, after
        self.runs: Counter[Key] = Counter()
        self.concurrent: Counter[Key] = Counter()
        self.most: Counter[Key] = Counter()

    async def __call__(self, key: Key) -> float | None:
        self.runs[key] += 1
        self.concurrent[key] += 1
        self.most[key] = max(self.most[key], self.concurrent[key])
        await asyncio.sleep(self.hold)  # a pass that takes a while (an API call)
        self.concurrent[key] -= 1
        return self.after


async def settle(controller: Controller, recorder: Recorder, runs: int) -> None:
    for _ in range(200):
        if sum(recorder.runs.values()) >= runs and not any(recorder.concurrent.values()):
            return
        await asyncio.sleep(0.01)


def test_many_triggers_at_once_make_one_pass_and_one_more_after() -> None:
    async def scenario() -> Recorder:
        recorder = Recorder()
        controller = Controller(recorder, lambda: [], workers=4)
        controller.start()
        controller.activate()
        key = ("shop", "orders")
        for _ in range(50):  # a Job event, a pod event and a spec change at the same moment
            controller.enqueue(key)
        await asyncio.sleep(0.01)
        for _ in range(50):  # more events while the first pass runs
            controller.enqueue(key)
        await settle(controller, recorder, 2)
        await asyncio.sleep(0.2)
        await controller.stop()
        return recorder

    recorder = asyncio.run(scenario())
    assert recorder.runs[("shop", "orders")] == 2
    assert recorder.most[("shop", "orders")] == 1


def test_different_resources_run_in_parallel() -> None:
    async def scenario() -> Recorder:
        recorder = Recorder(hold=0.2)
        controller = Controller(recorder, lambda: [], workers=4)
        controller.start()
        controller.activate()
        for index in range(4):
            controller.enqueue(("shop", f"db{index}"))
        await asyncio.sleep(0.1)
        assert sum(recorder.concurrent.values()) == 4
        await settle(controller, recorder, 4)
        await controller.stop()
        return recorder

    assert sum(asyncio.run(scenario()).runs.values()) == 4


def test_a_delayed_pass_is_a_timer_and_the_earliest_wins() -> None:
    async def scenario() -> Recorder:
        recorder = Recorder(hold=0.0)
        controller = Controller(recorder, lambda: [], workers=1)
        controller.start()
        controller.activate()
        key = ("shop", "orders")
        controller.enqueue(key, after=5.0)
        controller.enqueue(key, after=0.05)  # sooner: replaces the later timer
        controller.enqueue(key, after=0.5)  # later than the planned one: ignored
        await asyncio.sleep(0.2)
        assert recorder.runs[key] == 1
        await asyncio.sleep(0.5)
        await controller.stop()
        return recorder

    assert asyncio.run(scenario()).runs[("shop", "orders")] == 1


def test_nothing_runs_while_paused_and_everything_is_looked_at_on_resume() -> None:
    keys = [("shop", "a"), ("shop", "b")]

    async def scenario() -> Recorder:
        recorder = Recorder(hold=0.0)
        controller = Controller(recorder, lambda: keys, workers=2)
        controller.start()
        controller.enqueue(keys[0])
        await asyncio.sleep(0.1)
        assert sum(recorder.runs.values()) == 0  # another replica is the active one
        controller.activate()
        await settle(controller, recorder, 2)
        await controller.stop()
        return recorder

    assert dict(asyncio.run(scenario()).runs) == {keys[0]: 1, keys[1]: 1}
