"""The batcher joins queued requests into one call, refuses when full, and drops late requests."""

import asyncio
import threading
import time

import numpy as np
import pytest

from pipelines.serving import batching

pytestmark = pytest.mark.unit


def _echo_calls(hold: bytes = b"hold"):
    """(calls, call, release): ``call`` echoes its examples; a batch holding ``hold`` waits for
    ``release`` (so requests queue up behind it)."""
    calls, release = [], threading.Event()

    def call(examples):
        calls.append(list(examples))
        if hold in examples:
            release.wait(30)
        return {"echo": np.array(examples, dtype=object), "size": np.full(len(examples), len(examples))}

    return calls, call, release


def _until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_queued_requests_share_one_call_and_each_gets_its_own_rows():
    calls, call, release = _echo_calls()
    batcher = batching.Batcher(call, max_batch_size=6, batch_timeout=5.0, workers=1)
    held = batcher.submit([b"hold"], timeout=30)
    _until(lambda: calls)  # the one worker is in a call: the next requests queue
    futures = [batcher.submit([f"{i}a".encode(), f"{i}b".encode()], timeout=30) for i in range(3)]
    release.set()
    results = [f.result(timeout=30) for f in futures]
    assert list(held.result(timeout=30)["echo"]) == [b"hold"]
    batcher.close()
    assert calls == [[b"hold"], [b"0a", b"0b", b"1a", b"1b", b"2a", b"2b"]]
    assert [list(r["echo"]) for r in results] == [[b"0a", b"0b"], [b"1a", b"1b"], [b"2a", b"2b"]]
    assert all(list(r["size"]) == [6, 6] for r in results)


def test_a_batch_waits_for_more_only_while_another_call_runs():
    calls, call, release = _echo_calls()
    batcher = batching.Batcher(call, max_batch_size=3, batch_timeout=5.0, workers=2)
    started = time.monotonic()
    assert list(batcher.submit([b"alone"], timeout=30).result(timeout=30)["echo"]) == [b"alone"]
    assert time.monotonic() - started < 2.5  # idle: no waiting out the 5 s
    held = batcher.submit([b"hold"], timeout=30)
    _until(lambda: len(calls) == 2)  # a worker is in a call
    first = batcher.submit([b"x"], timeout=30)
    time.sleep(0.2)  # the other worker took it and waits for more, as a call runs
    second = batcher.submit([b"y", b"z"], timeout=30)  # fills the batch: no waiting out the 5 s
    assert list(second.result(timeout=30)["echo"]) == [b"y", b"z"] and len(first.result(timeout=30)["echo"]) == 1
    release.set()
    held.result(timeout=30)
    batcher.close()
    assert calls == [[b"alone"], [b"hold"], [b"x", b"y", b"z"]]
    assert time.monotonic() - started < 4.5


def test_a_request_that_does_not_fit_starts_the_next_batch():
    calls, call, release = _echo_calls()
    batcher = batching.Batcher(call, max_batch_size=3, batch_timeout=0.5, workers=1)
    held = batcher.submit([b"hold"], timeout=30)
    _until(lambda: calls)
    futures = [batcher.submit([b"x"] * n, timeout=30) for n in (2, 2, 1)]
    release.set()
    assert [len(f.result(timeout=30)["echo"]) for f in futures] == [2, 2, 1]
    held.result(timeout=30)
    batcher.close()
    assert [len(c) for c in calls] == [1, 2, 3]


def test_a_full_queue_refuses_and_a_late_request_is_never_run():
    release = threading.Event()
    calls = []

    def blocked(examples):
        calls.append(list(examples))
        release.wait(30)
        return {"y": np.zeros(len(examples))}

    batcher = batching.Batcher(blocked, max_batch_size=1, workers=1, max_queued=2)
    running = batcher.submit([b"first"], timeout=30)
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:  # the worker holds the first one
        time.sleep(0.01)
    late = batcher.submit([b"late"], timeout=0.01)
    waiting = batcher.submit([b"waiting"], timeout=30)
    with pytest.raises(batching.Overloaded, match="server overloaded: 2 requests queued"):
        batcher.submit([b"one too many"], timeout=30)
    time.sleep(0.05)
    release.set()
    assert list(running.result(timeout=30)["y"]) == [0.0]
    with pytest.raises(TimeoutError):
        late.result(timeout=30)
    assert list(waiting.result(timeout=30)["y"]) == [0.0]
    batcher.close()
    assert calls == [[b"first"], [b"waiting"]]


def test_a_failing_call_fails_every_request_of_its_batch_and_the_next_batch_still_runs():
    def call(examples):
        if b"bad" in examples:
            raise ValueError("graph failed")
        return {"y": np.ones(len(examples))}

    batcher = batching.Batcher(call, max_batch_size=4, batch_timeout=0.3, workers=2)
    first, second = batcher.submit([b"bad"], 30), batcher.submit([b"ok"], 30)
    for future in (first, second):
        with pytest.raises(ValueError, match="graph failed"):
            future.result(timeout=30)
    assert list(batcher.submit([b"ok"], 30).result(timeout=30)["y"]) == [1.0]
    batcher.close()


def test_awaited_requests_share_one_call_and_one_wake_up_of_their_loop():
    calls, call, release = _echo_calls()
    batcher = batching.Batcher(call, max_batch_size=6, batch_timeout=5.0, workers=1)
    held = batcher.submit([b"hold"], timeout=30)
    _until(lambda: calls)
    wake_ups = []

    async def main():
        loop = asyncio.get_running_loop()
        plain = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: wake_ups.append(args[0].__name__) or plain(*args)
        runs = [asyncio.ensure_future(batcher.run([f"{i}a".encode(), f"{i}b".encode()], timeout=30)) for i in range(3)]
        await asyncio.sleep(0.05)  # all three queued behind the held call
        release.set()
        return await asyncio.gather(*runs)

    results = asyncio.run(main())
    held.result(timeout=30)
    batcher.close()
    assert calls == [[b"hold"], [b"0a", b"0b", b"1a", b"1b", b"2a", b"2b"]]
    assert [list(r["echo"]) for r in results] == [[b"0a", b"0b"], [b"1a", b"1b"], [b"2a", b"2b"]]
    assert wake_ups == ["_settle_on_loop"]


def test_an_awaited_request_times_out_while_its_call_runs_and_a_full_queue_refuses_it():
    release = threading.Event()

    def blocked(examples):
        release.wait(30)
        return {"y": np.zeros(len(examples))}

    batcher = batching.Batcher(blocked, max_batch_size=1, workers=1, max_queued=1)

    async def main():
        started = time.monotonic()
        slow = asyncio.ensure_future(batcher.run([b"slow"], timeout=0.2))
        await asyncio.sleep(0.05)  # the worker holds it, the queue is empty
        queued = asyncio.ensure_future(batcher.run([b"queued"], timeout=30))
        await asyncio.sleep(0)
        with pytest.raises(batching.Overloaded, match="server overloaded: 1 requests queued"):
            await batcher.run([b"one too many"], timeout=30)
        with pytest.raises(TimeoutError, match="no answer within the deadline"):
            await slow
        waited = time.monotonic() - started
        release.set()  # the slow call ends after its request gave up: its answer is dropped
        assert list((await queued)["y"]) == [0.0]
        return waited

    assert asyncio.run(main()) < 5
    batcher.close()
