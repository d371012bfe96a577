"""Background work keeps order, bounds what is in flight, raises where it failed, and loses nothing."""

import base64
import concurrent.futures
import gzip
import json
import threading
import time

import apache_beam as beam
import pyarrow as pa
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.io.write import EncodeExamples
from pipelines.prepare.parity import RAW_EXAMPLE_COLUMN
from pipelines.runtime import overlap

pytestmark = pytest.mark.pipeline


def test_in_background_keeps_order_and_runs_off_the_calling_thread():
    caller = threading.get_ident()
    threads = set()

    def work(item):
        threads.add(threading.get_ident())
        time.sleep(0.001 * (5 - item % 5))  # later items finish first
        return item * 10

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as executor:
        assert list(overlap.in_background(work, range(12), executor, depth=3)) == [i * 10 for i in range(12)]
    assert caller not in threads


def test_in_background_bounds_the_work_in_flight():
    started = []

    def work(item):
        started.append(item)
        return item

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        results = overlap.in_background(work, range(10), executor, depth=2)
        assert next(results) == 0
        time.sleep(0.05)
        assert len(started) <= 4  # the item consumed, at most depth + 1 submitted after it
        assert list(results) == list(range(1, 10))


def test_in_background_raises_at_the_failing_item():
    def work(item):
        if item == 3:
            raise ValueError("bad block 3")
        return item

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        seen = []
        with pytest.raises(ValueError, match="bad block 3"):
            for result in overlap.in_background(work, range(6), executor, depth=1):
                seen.append(result)
    assert seen == [0, 1, 2]


def test_in_background_class_returns_due_results_then_drains_the_rest_with_their_context():
    background = overlap.InBackground(depth=2)
    due = []
    for item in range(5):
        due += background.submit(lambda x: x + 100, item, context=f"ctx{item}")
    assert due == [(100, "ctx0"), (101, "ctx1"), (102, "ctx2")]
    assert background.drain() == [(103, "ctx3"), (104, "ctx4")]
    assert background.drain() == []
    background.close()


def _transformed_batch(start: int, rows: int, sampled: set[int]) -> pa.RecordBatch:
    values = list(range(start, start + rows))
    raw = [[f"raw{v}".encode()] if v in sampled else None for v in values]
    return pa.RecordBatch.from_arrays(
        [
            pa.array([[v] for v in values], pa.large_list(pa.int64())),
            pa.array(raw, pa.large_list(pa.large_binary())),
        ],
        ["x_xf", RAW_EXAMPLE_COLUMN],
    )


def _decode_member(member: bytes) -> list[int]:
    """The x_xf values of the tf.Examples in one framed, gzipped batch."""
    data = gzip.decompress(member)
    values, position = [], 0
    while position < len(data):
        length = int.from_bytes(data[position : position + 8], "little")
        record = data[position + 12 : position + 12 + length]
        example = tf.train.Example.FromString(record)
        values.append(example.features.feature["x_xf"].int64_list.value[0])
        position += 16 + length
    return values


def test_encode_examples_outputs_every_batch_and_parity_pair_of_a_bundle():
    """Seven batches in one bundle: some come out of ``process``, the rest out of ``finish_bundle``."""
    sampled = {3, 250, 699}
    batches = [_transformed_batch(100 * i, 100, sampled) for i in range(7)]
    with TestPipeline() as pipeline:
        encoded = pipeline | beam.Create(batches, reshuffle=False) | EncodeExamples("rows_test")
        rows = encoded.examples | "Decode" >> beam.FlatMap(_decode_member)
        assert_that(rows, equal_to(list(range(700))), label="AllRows")
        raw = encoded[EncodeExamples.PARITY] | beam.Map(lambda line: json.loads(line)["raw"])
        expected = [base64.b64encode(f"raw{v}".encode()).decode() for v in sorted(sampled)]
        assert_that(raw, equal_to(expected), label="ParityPairs")


def test_discard_waits_for_and_drops_the_work_of_a_failed_bundle():
    background = overlap.InBackground(depth=5)
    finished = []

    def slow(item):
        time.sleep(0.02)
        finished.append(item)
        if item == 1:
            raise RuntimeError("bundle failed")
        return item

    for item in range(3):
        assert background.submit(slow, item) == []
    background.discard()
    assert sorted(finished) == [0, 1, 2]
    assert background.drain() == []
    assert background.submit(lambda x: x, 7) == [] and background.drain() == [(7, None)]
    background.close()


def test_without_background_threads_the_work_runs_inline_on_the_calling_thread(monkeypatch):
    monkeypatch.setenv(overlap.BACKGROUND_THREADS, "0")
    caller, threads = threading.get_ident(), set()

    def work(item):
        threads.add(threading.get_ident())
        return item * 10

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        assert list(overlap.in_background(work, range(5), executor)) == [0, 10, 20, 30, 40]
    background = overlap.InBackground(depth=2)
    assert [background.submit(work, i, context=i) for i in range(3)] == [[(0, 0)], [(10, 1)], [(20, 2)]]
    assert background.drain() == []
    assert threads == {caller}
    background.close()


def test_encode_examples_gives_the_same_outputs_inline(monkeypatch):
    monkeypatch.setenv(overlap.BACKGROUND_THREADS, "0")
    test_encode_examples_outputs_every_batch_and_parity_pair_of_a_bundle()
