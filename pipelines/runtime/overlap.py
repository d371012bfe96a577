"""Overlapping a DoFn's heavy per-batch work with the rest of its fused stage.

A runner executes a fused stage on one Python thread: while a block of CSV is decoded, nothing
downstream runs, and while a batch is encoded and compressed, nothing upstream does. The heavy
calls here (pyarrow's CSV reader and compute kernels, zlib, the tf.Example encoder) release the
GIL, so running them on one background thread, a bounded number of batches ahead, uses a second
core even on the in-process runner. Results come back in submission order; at most ``depth``
batches are in flight, so memory stays bounded.

Beam's metrics and outputs belong to the DoFn's own thread: work functions return plain values
and the DoFn counts and yields them.

The second core is only free when this process is the machine's one worker. With
``SKEWLESS_BACKGROUND_THREADS=0`` the same work runs inline, on the stage's thread: local
``multi_processing`` workers are started with it when there are as many of them as cores
(``pipelines/runtime/beam_patches.py``), where the threads only compete for the GIL and the
cores; a worker on a core of its own, such as each SDK process of a Dataflow VM (one per core),
can be given it too.
"""

import collections
import concurrent.futures
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

__all__ = ["BACKGROUND_THREADS", "BackgroundDoFn", "InBackground", "background_threads", "in_background"]

DEFAULT_DEPTH = 2
BACKGROUND_THREADS = "SKEWLESS_BACKGROUND_THREADS"  # "0": work inline, on the stage's thread


def background_threads() -> bool:
    """Whether work goes to background threads in this process (unless ``BACKGROUND_THREADS`` is "0")."""
    return os.environ.get(BACKGROUND_THREADS, "1") != "0"


def in_background(
    function: Callable[[Any], Any],
    items: Iterable[Any],
    executor: concurrent.futures.Executor,
    depth: int = DEFAULT_DEPTH,
) -> Iterator[Any]:
    """``map(function, items)``, computed on ``executor`` up to ``depth`` items ahead of the consumer.

    An exception raised by ``function`` is raised here, at the item that raised it. Without
    background threads (:func:`background_threads`), ``map(function, items)``.
    """
    if not background_threads():
        yield from map(function, items)
        return
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(executor.submit(function, item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class InBackground:
    """Runs work submitted from ``process`` calls in the background, returning results in order.

    ``submit`` returns the results that are due (the oldest once more than ``depth`` are in
    flight); ``drain`` returns the rest and is called from ``finish_bundle``. Each result comes back
    with the context it was submitted with (e.g. the element's window and timestamp).
    """

    def __init__(self, depth: int = DEFAULT_DEPTH):
        self._depth = depth
        self._inline = not background_threads()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque = collections.deque()

    def submit(self, function: Callable[..., Any], *args, context: Any = None) -> list[tuple[Any, Any]]:
        """Starts ``function(*args)``; returns ``(result, context)`` pairs that are due now (at once,
        its own, without background threads)."""
        if self._inline:
            return [(function(*args), context)]
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="skewless")
        self._pending.append((self._executor.submit(function, *args), context))
        due = []
        while len(self._pending) > self._depth:
            future, ctx = self._pending.popleft()
            due.append((future.result(), ctx))
        return due

    def drain(self) -> list[tuple[Any, Any]]:
        """Waits for all work in flight; returns its ``(result, context)`` pairs in order."""
        done = []
        while self._pending:
            future, ctx = self._pending.popleft()
            done.append((future.result(), ctx))
        return done

    def discard(self) -> None:
        """Waits for work left in flight by a failed bundle and drops it (and its errors)."""
        while self._pending:
            future, _ = self._pending.popleft()
            concurrent.futures.wait([future])

    def close(self) -> None:
        """Stops the background thread (after ``drain``)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class BackgroundDoFn(beam.DoFn):
    """A DoFn whose per-element work goes to ``self._background`` (an ``InBackground``).

    Subclasses submit work in ``process`` and drain it in ``finish_bundle``, where what they output
    must be windowed by hand: ``windowed`` does it for the context each item was submitted with.
    Work a failed bundle left in flight is dropped when the next bundle starts.
    """

    def setup(self):
        self._background = InBackground()

    def teardown(self):
        if getattr(self, "_background", None) is not None:
            self._background.close()

    def start_bundle(self):
        self._background.discard()

    @staticmethod
    def windowed(outputs: Iterable[Any], context: tuple[Any, Any]) -> Iterator[Any]:
        """``outputs`` (values or ``TaggedOutput``) as windowed values for ``finish_bundle``;
        ``context`` is the ``(window, timestamp)`` of the element they came from."""
        window, timestamp = context
        for output in outputs:
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(output.tag, WindowedValue(output.value, timestamp, [window]))
            else:
                yield WindowedValue(output, timestamp, [window])
