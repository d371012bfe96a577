"""Statistics as TFX reads them: a ``DatasetFeatureStatisticsList`` proto (``FeatureStats.pb``).

TFDV, Facets, the Kubeflow and Vertex AI consoles and TFX's own components read statistics in this
proto (``tensorflow_metadata``, installed with tf.Transform). Skewless writes it beside its JSON
(``stats/pre_transform/FeatureStats.pb``, ``stats/post_transform/FeatureStats.pb``), from the same
statistics dict, so the figures are the JSON's:

- the first dataset, ``All Examples`` (TFDV's name for the unsliced data), covers every row;
- then one dataset per split, ``train`` and ``eval`` (the JSON's ``split=train`` / ``split=eval``);
- then, with ``--slice-by``, one per slice, named as TFDV names a feature-value slice
  (``payment_type_Cash`` for the JSON's ``payment_type=Cash``).

Numbers carry count, missing, zeros, min, median, max, mean, std, an equal-width histogram
(``STANDARD``, 10 bins over [min, max]) and a quantiles histogram (``QUANTILES``, 10 bins of equal
count); strings carry unique (estimated), top values with their counts, average length and a rank
histogram; every feature its common statistics (values per example) and its ``path``.
"""

import itertools

from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines.io import files
from pipelines.quality.statistics import ALL

__all__ = ["ALL_EXAMPLES", "SPLIT_SLICE", "dataset_name", "to_proto", "write_proto"]

ALL_EXAMPLES = "All Examples"  # TFDV's default slice
SPLIT_SLICE = "split"  # the statistics' slice column holding each row's split
QUANTILE_BUCKETS = 10


def dataset_name(slice_key: str) -> str:
    """The proto's dataset name of a slice of the JSON: ``ALL`` -> ``All Examples``,
    ``split=train`` -> ``train``, ``payment_type=Cash`` -> ``payment_type_Cash``."""
    if slice_key == ALL:
        return ALL_EXAMPLES
    column, _, value = slice_key.partition("=")
    return value if column == SPLIT_SLICE else f"{column}_{value}"


def _order(slice_key: str) -> tuple:
    column = slice_key.partition("=")[0]
    return (slice_key != ALL, column != SPLIT_SLICE, slice_key != f"{SPLIT_SLICE}=train", slice_key)


def _common(feature: dict, common) -> None:
    common.num_non_missing = feature["count"]
    common.num_missing = feature["missing"]
    common.tot_num_values = feature["num_values"]
    if feature["count"]:
        common.avg_num_values = feature["num_values"] / feature["count"]
        per_row = feature.get("values_per_row") or {}
        common.min_num_values = per_row.get("min", 0)
        common.max_num_values = per_row.get("max", 0)


def _numeric(feature: dict, stats) -> None:
    _common(feature, stats.common_stats)
    stats.num_zeros = feature.get("zeros", 0)
    if not feature["num_values"]:
        return
    quantiles = feature["quantiles"]
    stats.mean, stats.std_dev = feature["mean"], feature["std"]
    stats.min, stats.max = feature["min"], feature["max"]
    stats.median = quantiles[len(quantiles) // 2]
    equal_width = feature.get("equal_width_histogram")
    if equal_width:
        histogram = stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
        edges = [feature["min"], *equal_width["boundaries"], feature["max"]]
        for (low, high), count in zip(itertools.pairwise(edges), equal_width["counts"], strict=True):
            histogram.buckets.add(low_value=low, high_value=high, sample_count=count)
    histogram = stats.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
    step = (len(quantiles) - 1) // QUANTILE_BUCKETS
    for index in range(QUANTILE_BUCKETS):
        histogram.buckets.add(
            low_value=quantiles[index * step],
            high_value=quantiles[(index + 1) * step],
            sample_count=feature["num_values"] / QUANTILE_BUCKETS,
        )


def _string(feature: dict, stats) -> None:
    _common(feature, stats.common_stats)
    stats.unique = feature.get("unique", 0)
    stats.avg_length = feature.get("avg_length", 0.0)
    for rank, top in enumerate(feature.get("top", [])):
        stats.top_values.add(value=top["value"], frequency=top["count"])
        stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=top["value"], sample_count=top["count"])


def to_proto(statistics: dict) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The statistics dict of ``GenerateStatistics`` as a ``DatasetFeatureStatisticsList``."""
    result = statistics_pb2.DatasetFeatureStatisticsList()
    for slice_key in sorted(statistics["slices"], key=_order):
        described = statistics["slices"][slice_key]
        dataset = result.datasets.add(name=dataset_name(slice_key), num_examples=described["num_rows"])
        for name, feature in sorted(described["features"].items()):
            proto = dataset.features.add()
            proto.path.step.append(name)
            if feature["type"] == "numeric":
                proto.type = (
                    statistics_pb2.FeatureNameStatistics.INT
                    if feature.get("value_type") == "int"
                    else statistics_pb2.FeatureNameStatistics.FLOAT
                )
                _numeric(feature, proto.num_stats)
            else:
                proto.type = statistics_pb2.FeatureNameStatistics.STRING
                _string(feature, proto.string_stats)
    return result


def write_proto(statistics: dict, path: str) -> None:
    """Writes the statistics as a binary ``DatasetFeatureStatisticsList`` (``FeatureStats.pb``)."""
    files.write_bytes(path, to_proto(statistics).SerializeToString())
