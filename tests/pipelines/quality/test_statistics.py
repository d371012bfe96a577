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
    assert (x["zeros"], x["value_type"], x["values_per_row"]) == (0, "float", {"min": 1, "max": 1})
    assert x["equal_width_histogram"]["boundaries"] == pytest.approx([1.4, 1.8, 2.2, 2.6, 3.0, 3.4, 3.8, 4.2, 4.6])
    assert sum(x["equal_width_histogram"]["counts"]) == 5
    assert overall["features"]["s"] == {
        "type": "string",
        "count": 5,
        "missing": 1,
        "num_values": 5,
        "values_per_row": {"min": 1, "max": 1},
        "avg_length": 1.0,
        "unique": 3,
        "top": [{"value": "a", "count": 3}, {"value": "b", "count": 1}, {"value": "c", "count": 1}],
    }


def test_zeros_values_per_row_and_string_lengths():
    batch = pa.RecordBatch.from_pydict(
        {
            "n": pa.array([[0, 0, 7], [1], None, [0]], pa.large_list(pa.int64())),
            "s": pa.array([[b"ab", b"abcd"], [b"x"], [], None], pa.large_list(pa.large_binary())),
        }
    )
    features = statistics.statistics_of([batch])["slices"]["ALL"]["features"]
    assert (features["n"]["zeros"], features["n"]["value_type"]) == (3, "int")
    assert features["n"]["values_per_row"] == {"min": 1, "max": 3}
    assert features["s"]["values_per_row"] == {"min": 1, "max": 2}  # rows with none are missing
    assert features["s"]["avg_length"] == pytest.approx(7 / 3)


def test_the_proto_holds_the_same_figures():
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from pipelines.quality import feature_stats

    result = statistics.statistics_of(_batches(), ["s"])
    proto = feature_stats.to_proto(result)
    assert [(d.name, d.num_examples) for d in proto.datasets] == [
        ("All Examples", 6),
        ("s_<missing>", 1),
        ("s_a", 3),
        ("s_b", 1),
        ("s_c", 1),
    ]
    x, s = sorted(proto.datasets[0].features, key=lambda f: f.path.step[0], reverse=True)
    assert x.type == statistics_pb2.FeatureNameStatistics.FLOAT and list(x.path.step) == ["x"]
    assert (x.num_stats.mean, x.num_stats.min, x.num_stats.max, x.num_stats.median) == (3.0, 1.0, 5.0, 3.0)
    assert x.num_stats.common_stats.num_non_missing == 5 and x.num_stats.common_stats.num_missing == 1
    assert x.num_stats.common_stats.avg_num_values == 1.0
    standard, quantiles = x.num_stats.histograms
    assert standard.type == statistics_pb2.Histogram.STANDARD and len(standard.buckets) == 10
    assert (standard.buckets[0].low_value, standard.buckets[-1].high_value) == (1.0, 5.0)
    assert sum(b.sample_count for b in standard.buckets) == 5
    assert [b.sample_count for b in quantiles.buckets] == [0.5] * 10
    assert s.type == statistics_pb2.FeatureNameStatistics.STRING
    assert [(v.value, v.frequency) for v in s.string_stats.top_values] == [("a", 3), ("b", 1), ("c", 1)]
    assert [(b.low_rank, b.label, b.sample_count) for b in s.string_stats.rank_histogram.buckets] == [
        (0, "a", 3),
        (1, "b", 1),
        (2, "c", 1),
    ]
    assert (s.string_stats.unique, s.string_stats.avg_length) == (3, 1.0)
    assert feature_stats.dataset_name("split=eval") == "eval"


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
