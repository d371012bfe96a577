"""Batching concurrent requests into one graph call, as TF Serving's batching does.

Requests wait in a bounded queue; each worker thread takes the oldest, adds those queued behind it
while the batch holds at most ``max_batch_size`` examples (waiting up to ``batch_timeout`` for more
to arrive), makes one graph call and hands each request its rows. A graph call releases the GIL,
so two workers keep two cores busy while the event loop decodes the next requests. A full queue
refuses a request at once (the server answers 503); a request whose deadline passes while it
waits is never run (504).
"""

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
    future: concurrent.futures.Future


class Batcher:
    """Runs a function of a batch of examples over requests batched together.

    Args:
        call: Serialized examples -> output arrays by name, one row per example.
        max_batch_size: Most examples in one call (a larger request is called alone).
        batch_timeout: Seconds a worker waits for more requests to fill a batch (0: takes what is
            queued).
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
        for thread in self._threads:
            thread.start()

    def submit(self, examples: list[bytes], timeout: float) -> concurrent.futures.Future:
        """Queues a request; its future gives its output arrays.

        Raises:
            Overloaded: When the queue is full.
        """
        future = concurrent.futures.Future()
        try:
            self._queue.put_nowait(_Task(examples, time.monotonic() + timeout, future))
        except queue.Full:
            raise Overloaded(f"server overloaded: {self._queue.maxsize} requests queued") from None
        return future

    def close(self) -> None:
        """Runs what is queued, then stops the workers."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _gather(self) -> list[_Task] | None:
        """The next batch (None: stop)."""
        with self._take:
            first, self._held = (self._held, None) if self._held else (self._queue.get(), None)
            if first is None:
                return None
            batch, size = [first], len(first.examples)
            until = time.monotonic() + self._batch_timeout
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
            live = []
            for task in batch:
                if task.deadline < now:
                    task.future.set_exception(TimeoutError("the request waited past its deadline"))
                elif task.future.set_running_or_notify_cancel():
                    live.append(task)
            if not live:
                continue
            examples = live[0].examples if len(live) == 1 else [e for task in live for e in task.examples]
            self._on_batch(len(examples))
            try:
                outputs = self._call(examples)
            except Exception as error:  # noqa: BLE001 - every waiting request gets the failure
                for task in live:
                    task.future.set_exception(error)
                continue
            start = 0
            for task in live:
                end = start + len(task.examples)
                task.future.set_result(outputs if len(live) == 1 else {k: v[start:end] for k, v in outputs.items()})
                start = end
