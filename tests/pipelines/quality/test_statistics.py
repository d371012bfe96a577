"""Statistics: exact figures on small batches, slices, and the Beam transform agreeing with them."""

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.quality import statistics

pytestmark = pytest.mark.pipeline


def _batches():
    first = pa.RecordBatch.from_pydict(
        {
            "x": pa.array([[1.0], [2.0], None, [4.0]], pa.large_list(pa.float32())),
            "s": pa.array([[b"a"], [b"b"], [b"a"], None], pa.large_list(pa.large_binary())),
            "__raw_example": pa.array([None] * 4, pa.large_list(pa.large_binary())),
        }
    )
    second = pa.RecordBatch.from_pydict(
        {
            "x": pa.array([[3.0], [5.0]], pa.large_list(pa.float32())),
            "s": pa.array([[b"a"], [b"c"]], pa.large_list(pa.large_binary())),
            "__raw_example": pa.array([None] * 2, pa.large_list(pa.large_binary())),
        }
    )
    return [first, second]


def test_numeric_and_string_statistics_are_exact_on_small_data():
    result = statistics.statistics_of(_batches())
    overall = result["slices"]["ALL"]
    assert overall["num_rows"] == 6
    assert sorted(overall["features"]) == ["s", "x"]  # passthrough columns are not described
    x = overall["features"]["x"]
    assert {k: x[k] for k in ("type", "count", "missing", "num_values", "min", "max", "mean")} == {
        "type": "numeric",
        "count": 5,
        "missing": 1,
        "num_values": 5,
        "min": 1.0,
        "max": 5.0,
        "mean": 3.0,
    }
    assert x["std"] == pytest.approx(2**0.5)
    assert x["quantiles"][0] == 1.0 and x["quantiles"][-1] == 5.0 and len(x["quantiles"]) == 21
    assert sum(x["histogram"]["counts"]) == 5
    assert len(x["histogram"]["counts"]) == len(x["histogram"]["boundaries"]) + 1
    assert overall["features"]["s"] == {
        "type": "string",
        "count": 5,
        "missing": 1,
        "num_values": 5,
        "unique": 3,
        "top": [{"value": "a", "count": 3}, {"value": "b", "count": 1}, {"value": "c", "count": 1}],
    }


def test_count_into_bins_is_left_closed():
    assert statistics.count_into_bins([0.5, 1.0, 1.5, 2.0, 9.0], [1.0, 2.0]).tolist() == [1, 2, 2]


def test_slices_partition_the_rows():
    result = statistics.statistics_of(_batches(), ["s"])
    slices = result["slices"]
    assert sorted(slices) == ["ALL", "s=<missing>", "s=a", "s=b", "s=c"]
    assert {key: value["num_rows"] for key, value in slices.items()} == {
        "ALL": 6,
        "s=<missing>": 1,
        "s=a": 3,
        "s=b": 1,
        "s=c": 1,
    }
    assert slices["s=a"]["features"]["x"]["mean"] == pytest.approx(2.0)  # rows 1.0, missing, 3.0
    # every slice is binned like ALL, so slices compare with each other
    assert (
        slices["s=a"]["features"]["x"]["histogram"]["boundaries"]
        == slices["ALL"]["features"]["x"]["histogram"]["boundaries"]
    )


def test_generate_statistics_on_beam_equals_the_in_memory_result():
    expected = statistics.statistics_of(_batches(), ["s"])
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        result = p | beam.Create(_batches()) | statistics.GenerateStatistics(["s"])
        assert_that(result, equal_to([expected]))


def test_given_bins_are_counted_exactly_and_own_bins_come_from_the_sketch():
    given = statistics.statistics_of(_batches(), boundaries={"x": [2.5, 4.0]})
    assert given["slices"]["ALL"]["features"]["x"]["histogram"] == {"boundaries": [2.5, 4.0], "counts": [2, 1, 2]}
    own = statistics.statistics_of(_batches())["slices"]["ALL"]["features"]["x"]["histogram"]
    # values 1..5 against their own quantile bins: every value in a bin of its own, none lost
    assert sum(own["counts"]) == 5 and max(own["counts"]) <= 2


@pytest.mark.parametrize(
    ("numbers", "integers", "counted"),
    [
        ([float(h % 24) for h in range(100_000)], True, True),  # hours: counted, one weighted value each
        ([-3.0, -3.0, 7.0, 0.0, 2.0] * 10, True, True),  # negative integers too
        ([float(i * 1000) for i in range(5000)] * 2, True, True),  # ids spread wide: counted by sorting
        ([round(0.01 * (i % 900), 2) for i in range(9000)], False, True),  # fares: counted by sorting
        ([0.1 * i for i in range(7000)], False, False),  # numbers all distinct: one weighted value each
    ],
)
def test_numbers_counted_into_the_sketch_give_the_same_quantiles(numbers, integers, counted, monkeypatch):
    import numpy as np
    from tfx_bsl import sketches

    added = []
    plain, counted_sketch = (sketches.QuantilesSketch(0.005, 1 << 32, 1) for _ in range(2))
    plain.AddValues(pa.array(numbers))

    class Recording:
        def AddValues(self, *args):  # noqa: N802 - the sketch's own method name
            added.append(len(args[0]))
            counted_sketch.AddValues(*args)

    statistics._add_to_sketch(Recording(), np.array(numbers), integers)
    assert added == [len(set(numbers))] and (len(set(numbers)) < len(numbers)) == counted
    assert counted_sketch.GetQuantiles(20).to_pylist() == plain.GetQuantiles(20).to_pylist()
