"""Batching concurrent requests into one graph call, as TF Serving's batching does.

Requests wait in a bounded queue; each worker thread takes the oldest, adds those queued behind it
while the batch holds at most ``max_batch_size`` examples (waiting up to ``batch_timeout`` for more
to arrive while another worker's call runs; never when the server is idle), makes one graph call
and hands each request its rows. A graph call releases the GIL, so two workers keep two cores busy
while the event loop decodes the next requests. A full queue refuses a request at once (the server
answers 503); a request whose deadline passes while it waits is never run (504).

A server's handlers ``await`` :meth:`Batcher.run` on their event loop: the answer comes back as
that loop's own future, and the requests of one batch are settled with one wake-up of the loop
(``submit`` and a ``concurrent.futures.Future`` are for threads).
"""

import asyncio
import concurrent.futures
import dataclasses
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

__all__ = ["Batcher", "Overloaded"]


class Overloaded(Exception):
    """The queue is full: the request is refused without waiting."""


@dataclasses.dataclass
class _Task:
    examples: list[bytes]
    deadline: float  # time.monotonic() after which the request is no longer wanted
    future: concurrent.futures.Future | asyncio.Future
    loop: asyncio.AbstractEventLoop | None = None  # the loop of an asyncio future (set only there)

    def start(self) -> bool:
        """Whether the request is still wanted (a concurrent future is marked running)."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.done()  # cancelled or timed out: skipped (a stale read only runs it)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no answer within the deadline"))


def _resolve(future, result, error: BaseException | None) -> None:
    """Gives ``future`` its result, or its error."""
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _settle_on_loop(settled: list) -> None:
    for future, result, error in settled:
        if not future.done():  # else timed out or cancelled meanwhile
            _resolve(future, result, error)


class Batcher:
    """Runs a function of a batch of examples over requests batched together.

    Args:
        call: Serialized examples -> output arrays by name, one row per example.
        max_batch_size: Most examples in one call (a larger request is called alone).
        batch_timeout: Seconds a worker waits for more requests to fill a batch while another
            worker's call runs (0: takes what is queued). A lone request on an idle server never
            waits: the wait only saves calls when the cores are busy anyway.
        workers: Threads making calls.
        max_queued: Requests waiting at most; one more is refused with :class:`Overloaded`.
        on_batch: Called with each batch's number of examples (for metrics).
    """

    def __init__(
        self,
        call: Callable[[list[bytes]], dict[str, np.ndarray]],
        max_batch_size: int = 1024,
        batch_timeout: float = 0.0,
        workers: int = 2,
        max_queued: int = 1024,
        on_batch: Callable[[int], None] = lambda size: None,
    ):
        self._call = call
        self._max_batch_size = max_batch_size
        self._batch_timeout = batch_timeout
        self._on_batch = on_batch
        self._queue: queue.Queue[_Task | None] = queue.Queue(maxsize=max_queued)
        self._take = threading.Lock()  # one worker gathers a batch at a time, in arrival order
        self._threads = [
            threading.Thread(target=self._work, name=f"skewless-batcher-{i}", daemon=True) for i in range(workers)
        ]
        self._held: _Task | None = None  # a task that did not fit the last batch: first in the next
        self._calling = 0  # workers in a call (changed under _counting)
        self._counting = threading.Lock()
        for thread in self._threads:
            thread.start()

    def submit(self, examples: list[bytes], timeout: float) -> concurrent.futures.Future:
        """Queues a request; its future gives its output arrays.

        Raises:
            Overloaded: When the queue is full.
        """
        future = concurrent.futures.Future()
        self._put(_Task(examples, time.monotonic() + timeout, future))
        return future

    async def run(self, examples: list[bytes], timeout: float) -> dict[str, np.ndarray]:
        """Queues a request and waits for its output arrays, on the running event loop.

        Raises:
            Overloaded: When the queue is full.
            TimeoutError: When no answer came within ``timeout`` seconds.
            Exception: What the call raised for the request's batch.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put(_Task(examples, time.monotonic() + timeout, future, loop))
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _put(self, task: _Task) -> None:
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            raise Overloaded(f"server overloaded: {self._queue.maxsize} requests queued") from None

    def close(self) -> None:
        """Runs what is queued, then stops the workers."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _gather(self) -> list[_Task] | None:
        """The next batch (None: stop). It waits up to ``batch_timeout`` for more requests only
        while another worker's call runs: an idle server answers a lone request at once."""
        with self._take:
            first, self._held = (self._held, None) if self._held else (self._queue.get(), None)
            if first is None:
                return None
            batch, size = [first], len(first.examples)
            until = time.monotonic() + self._batch_timeout if self._calling else 0.0
            while size < self._max_batch_size:
                try:
                    wait = until - time.monotonic()
                    task = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if task is None or size + len(task.examples) > self._max_batch_size:
                    self._held = task if task is not None else None
                    if task is None:
                        self._queue.put(None)  # the stop is for another worker, after this batch
                    break
                batch.append(task)
                size += len(task.examples)
            return batch

    def _work(self) -> None:
        while (batch := self._gather()) is not None:
            now = time.monotonic()
            live, settled = [], []
            for task in batch:
                if task.deadline < now:
                    settled.append((task, None, TimeoutError("the request waited past its deadline")))
                elif task.start():
                    live.append(task)
            if live:
                settled += self._call_batch(live)
            self._settle(settled)

    def _call_batch(self, live: list[_Task]) -> list[tuple]:
        """One call for the live requests -> (task, its rows, None) each, or (task, None, error)."""
        examples = live[0].examples if len(live) == 1 else [e for task in live for e in task.examples]
        self._on_batch(len(examples))
        with self._counting:
            self._calling += 1
        try:
            outputs = self._call(examples)
        except Exception as error:  # noqa: BLE001 - every waiting request gets the failure
            return [(task, None, error) for task in live]
        finally:
            with self._counting:
                self._calling -= 1
        if len(live) == 1:
            return [(live[0], outputs, None)]
        settled, start = [], 0
        for task in live:
            end = start + len(task.examples)
            settled.append((task, {k: v[start:end] for k, v in outputs.items()}, None))
            start = end
        return settled

    @staticmethod
    def _settle(settled: list[tuple]) -> None:
        """Hands each request its result: a thread's future at once, a loop's futures in one call
        on their loop (one wake-up a batch)."""
        by_loop = {}
        for task, result, error in settled:
            if task.loop is not None:
                by_loop.setdefault(task.loop, []).append((task.future, result, error))
            elif not task.future.cancelled():  # a late request may have been cancelled meanwhile
                _resolve(task.future, result, error)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_on_loop, items)
            except RuntimeError:  # the loop has closed: nobody waits any more
                pass
