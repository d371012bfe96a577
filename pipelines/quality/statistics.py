"""Per-feature statistics of Arrow RecordBatches, overall and per slice, in one Beam job.

What TFDV's ``GenerateStatistics`` gives, built from ``tfx_bsl`` sketches and Arrow compute:
numbers get count, missing, min/max/mean/std, quantiles (a quantiles sketch) and a histogram;
strings get count, missing, an estimate of distinct values (KMV sketch) and the most frequent
values (Misra-Gries sketch). The histogram's bins are the feature's overall 20-quantiles
(deduplicated); their counts come from each slice's quantile sketch (100 quantiles, so within
about 1% of the values per bin), in one pass. Given bins instead (``check-skew`` passes the
training bins), values are counted into them exactly, in the same pass.

Output, one JSON document::

    {"slices": {"ALL": {"num_rows": N, "features": {name: {...}}}, "payment_type=Cash": {...}}}
"""

import copy
import dataclasses
import itertools
import math

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.formats.decode import first_values
from pipelines.io import files
from pipelines.io.coders import KeyedBatch, of_type
from pipelines.runtime import overlap

__all__ = [
    "ALL",
    "AttachSliceColumns",
    "GenerateStatistics",
    "SLICE_PREFIX",
    "WriteStatistics",
    "proto_path",
    "slice_batches",
    "statistics_of",
]

ALL = "ALL"
SLICE_PREFIX = "__slice__"
MISSING_SLICE = "<missing>"
OTHER_SLICE = "<other>"  # values past the first MAX_SLICES_PER_COLUMN of a column
MAX_SLICES_PER_COLUMN = 100
NUM_QUANTILES = 20
EQUAL_WIDTH_BINS = 10
_CDF_POINTS = 100  # quantiles kept per slice to place its values into the overall bins
TOP_K = 100
_SKETCH_BUCKETS = 1000


def _is_numeric(data_type: pa.DataType) -> bool:
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type)


def _value_type(column: pa.Array) -> pa.DataType:
    return (
        column.type.value_type if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) else column.type
    )


def _flat(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A column's values and, per row, how many it has (list columns; scalars count 1 unless null)."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return pc.list_flatten(column), np.asarray(pc.list_value_length(column).fill_null(0))
    return column.drop_null(), np.asarray(column.is_valid(), dtype=np.int64)


def slice_batches(batch: pa.RecordBatch, slice_columns: list[str], whole: bool = True):
    """Yields ``(slice_key, batch)``: the whole batch under ``ALL`` (unless not ``whole``), then one
    sub-batch per value of each slice column (``column=value``; rows without a value under
    ``column=<missing>``). A column of one value in the whole batch yields the batch itself.

    A slice column is looked up as ``__slice__<column>`` first (a passthrough copy in transformed
    batches), then as ``<column>``.
    """
    if whole:
        yield ALL, batch
    for name in slice_columns:
        index = batch.schema.get_field_index(SLICE_PREFIX + name)
        index = index if index >= 0 else batch.schema.get_field_index(name)
        column = batch.column(index)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            column = first_values(column)
        encoded = pc.dictionary_encode(column)
        dictionary = encoded.dictionary.to_pylist()
        indices = encoded.indices
        if len(dictionary) == 1 and not indices.null_count:  # one value: no copy
            value = dictionary[0]
            yield f"{name}={value.decode('utf-8', 'replace') if isinstance(value, bytes) else value}", batch
            continue
        for code, value in enumerate(dictionary[:MAX_SLICES_PER_COLUMN]):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            yield f"{name}={text}", batch.filter(pc.equal(indices, code))
        if len(dictionary) > MAX_SLICES_PER_COLUMN:
            yield f"{name}={OTHER_SLICE}", batch.filter(pc.greater_equal(indices, MAX_SLICES_PER_COLUMN))
        missing = pc.is_null(indices)
        if pc.any(missing).as_py():
            yield f"{name}={MISSING_SLICE}", batch.filter(missing)


@dataclasses.dataclass
class _FeatureAccumulator:
    numeric: bool
    rows_present: int = 0
    rows_missing: int = 0
    num_values: int = 0
    total: float = 0.0
    total_squares: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    sketch: object = None  # QuantilesSketch for numbers, (KmvSketch, MisraGriesSketch) for strings
    bin_counts: np.ndarray | None = None  # exact counts into given bins, when bins are given
    integers: bool = False  # numbers of an integer type
    zeros: int = 0  # numbers equal to 0
    total_length: int = 0  # strings: the bytes of every value
    min_values: int = 2**62  # the fewest values a row with any has
    max_values: int = 0  # the most values a row has


def _new_accumulator(numeric: bool) -> _FeatureAccumulator:
    from tfx_bsl import sketches

    accumulator = _FeatureAccumulator(numeric)
    if numeric:
        accumulator.sketch = sketches.QuantilesSketch(0.005, 1 << 32, 1)
    else:
        accumulator.sketch = (sketches.KmvSketch(_SKETCH_BUCKETS), sketches.MisraGriesSketch(_SKETCH_BUCKETS))
    return accumulator


_MAX_COUNTED_RANGE = 1 << 16


def _add_to_sketch(sketch, numbers: np.ndarray, integers: bool) -> None:
    """Adds a batch's numbers (no NaN) to a quantiles sketch, once per distinct value with its count
    as weight, which the sketch summarises with the same error bound.

    Integers within a narrow range (ids, buckets, hours, flags: most of a transformed batch) are
    counted with ``np.bincount``. Other numbers are counted by sorting (``np.unique``): a sorted,
    weighted batch is cheaper for the sketch than the same values one by one.
    """
    if integers and len(numbers):
        low, high = int(numbers.min()), int(numbers.max())
        if high - low < min(_MAX_COUNTED_RANGE, 4 * len(numbers)):
            counts = np.bincount((numbers - low).astype(np.int64), minlength=high - low + 1)
            present = np.flatnonzero(counts)
            sketch.AddValues(pa.array(present + float(low)), pa.array(counts[present].astype(np.float64)))
            return
    distinct, counts = np.unique(numbers, return_counts=True)
    sketch.AddValues(pa.array(distinct), pa.array(counts.astype(np.float64)))


def _feature_columns(batch: pa.RecordBatch):
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if not name.startswith("__"):
            yield name, column


class _SummaryCombineFn(beam.CombineFn):
    """Per-feature counts, moments, extremes and sketches of all batches of one slice (and, when
    ``boundaries`` are given, exact counts of numbers into those bins)."""

    def __init__(self, boundaries: dict[str, list[float]] | None = None):
        self._boundaries = boundaries or {}

    def create_accumulator(self):
        return {"num_rows": 0, "features": {}}

    def add_input(self, accumulator, batch: pa.RecordBatch):
        accumulator["num_rows"] += batch.num_rows
        for name, column in _feature_columns(batch):
            value_type = _value_type(column)
            numeric = _is_numeric(value_type)
            feature = accumulator["features"].get(name) or _new_accumulator(numeric)
            accumulator["features"][name] = feature
            values, lengths = _flat(column)
            present = int(np.count_nonzero(lengths))
            feature.rows_present += present
            feature.rows_missing += len(lengths) - present
            if present:
                counted = lengths[lengths > 0]
                feature.min_values = min(feature.min_values, int(counted.min()))
                feature.max_values = max(feature.max_values, int(counted.max()))
            if numeric:
                feature.integers = pa.types.is_integer(value_type)
                numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
                numbers = numbers[~np.isnan(numbers)]
                feature.num_values += len(numbers)
                feature.zeros += int(np.count_nonzero(numbers == 0))
                if len(numbers):
                    feature.total += float(numbers.sum())
                    feature.total_squares += float(np.square(numbers).sum())
                    feature.minimum = min(feature.minimum, float(numbers.min()))
                    feature.maximum = max(feature.maximum, float(numbers.max()))
                    _add_to_sketch(feature.sketch, numbers, pa.types.is_integer(value_type))
                if name in self._boundaries:
                    counts = count_into_bins(numbers, self._boundaries[name])
                    feature.bin_counts = counts if feature.bin_counts is None else feature.bin_counts + counts
            else:
                feature.num_values += len(values)
                if len(values):
                    feature.total_length += int(pc.sum(pc.binary_length(values)).as_py() or 0)
                    feature.sketch[0].AddValues(values)
                    feature.sketch[1].AddValues(values)
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            merged["num_rows"] += other["num_rows"]
            for name, feature in other["features"].items():
                mine = merged["features"].get(name)
                if mine is None:
                    merged["features"][name] = feature
                    continue
                mine.rows_present += feature.rows_present
                mine.rows_missing += feature.rows_missing
                mine.num_values += feature.num_values
                mine.total += feature.total
                mine.total_squares += feature.total_squares
                mine.minimum = min(mine.minimum, feature.minimum)
                mine.maximum = max(mine.maximum, feature.maximum)
                mine.integers = mine.integers or feature.integers
                mine.zeros += feature.zeros
                mine.total_length += feature.total_length
                mine.min_values = min(mine.min_values, feature.min_values)
                mine.max_values = max(mine.max_values, feature.max_values)
                if feature.bin_counts is not None:
                    mine.bin_counts = (
                        feature.bin_counts if mine.bin_counts is None else mine.bin_counts + feature.bin_counts
                    )
                if mine.numeric:
                    mine.sketch.Merge(feature.sketch)
                else:
                    mine.sketch[0].Merge(feature.sketch[0])
                    mine.sketch[1].Merge(feature.sketch[1])
        return merged

    def extract_output(self, accumulator):
        features = {}
        for name, feature in sorted(accumulator["features"].items()):
            stats = {"count": feature.rows_present, "missing": feature.rows_missing, "num_values": feature.num_values}
            if feature.rows_present:
                stats["values_per_row"] = {"min": feature.min_values, "max": feature.max_values}
            if feature.numeric:
                stats["type"] = "numeric"
                stats["value_type"] = "int" if feature.integers else "float"
                stats["zeros"] = feature.zeros
                if feature.num_values:
                    mean = feature.total / feature.num_values
                    variance = max(feature.total_squares / feature.num_values - mean * mean, 0.0)
                    quantiles = feature.sketch.GetQuantiles(NUM_QUANTILES).flatten().to_pylist()
                    stats.update(
                        min=feature.minimum,
                        max=feature.maximum,
                        mean=mean,
                        std=math.sqrt(variance),
                        quantiles=quantiles,
                        _cdf=feature.sketch.GetQuantiles(_CDF_POINTS).flatten().to_pylist(),
                    )
                if name in self._boundaries:
                    counts = (
                        feature.bin_counts
                        if feature.bin_counts is not None
                        else np.zeros(len(self._boundaries[name]) + 1)
                    )
                    stats["histogram"] = {"boundaries": self._boundaries[name], "counts": [int(c) for c in counts]}
            else:
                stats["type"] = "string"
                stats["avg_length"] = feature.total_length / feature.num_values if feature.num_values else 0.0
                stats["unique"] = int(feature.sketch[0].Estimate()) if feature.num_values else 0
                top = feature.sketch[1].Estimate().to_pylist() if feature.num_values else []
                top = sorted(top, key=lambda item: (-item["counts"], item["values"]))[:TOP_K]
                stats["top"] = [
                    {"value": item["values"].decode("utf-8", "replace"), "count": int(item["counts"])} for item in top
                ]
            features[name] = stats
        return {"num_rows": accumulator["num_rows"], "features": features}


def histogram_boundaries(stats: dict) -> dict[str, list[float]]:
    """Histogram bin boundaries per numeric feature: its inner quantiles, deduplicated."""
    boundaries = {}
    for name, feature in stats["features"].items():
        if feature["type"] == "numeric" and feature.get("quantiles"):
            boundaries[name] = sorted(set(feature["quantiles"][1:-1]))
    return boundaries


def count_into_bins(values: np.ndarray, boundaries: list[float]) -> np.ndarray:
    """Counts values into bins ``(-inf, b0), [b0, b1), ..., [b_last, inf)``."""
    return np.bincount(np.searchsorted(np.asarray(boundaries), values, side="right"), minlength=len(boundaries) + 1)


def _counts_from_cdf(cdf: list[float], num_values: int, boundaries: list[float]) -> list[int]:
    """Counts per bin estimated from evenly spaced quantiles (each point carries 1/len(cdf) of the
    values), so that slices can be binned like the whole data without a second pass."""
    points = count_into_bins(np.asarray(cdf), boundaries)
    expected = points / max(points.sum(), 1) * num_values
    counts = np.floor(expected).astype(np.int64)
    # largest remainders get the rest, so that the counts add up to the number of values
    for index in np.argsort(-(expected - counts), kind="stable")[: num_values - counts.sum()]:
        counts[index] += 1
    return counts.tolist()


def _assemble(slices: list[tuple[str, dict]], given: dict[str, list[float]] | None) -> dict:
    """All slices in one dict; histograms over the given bins or over ALL's quantiles."""
    slices = dict(slices)
    boundaries = given if given is not None else (histogram_boundaries(slices[ALL]) if ALL in slices else {})
    for stats in slices.values():
        for name, feature in stats["features"].items():
            cdf = feature.pop("_cdf", None)
            if cdf is not None:  # TFDV's standard histogram: equal-width bins over [min, max]
                inner = np.linspace(feature["min"], feature["max"], EQUAL_WIDTH_BINS + 1)[1:-1].tolist()
                inner = inner if feature["max"] > feature["min"] else []
                feature["equal_width_histogram"] = {
                    "boundaries": inner,
                    "counts": _counts_from_cdf(cdf, feature["num_values"], inner),
                }
            if given is None and name in boundaries and cdf is not None:
                feature["histogram"] = {
                    "boundaries": boundaries[name],
                    "counts": _counts_from_cdf(cdf, feature["num_values"], boundaries[name]),
                }
    return {"slices": {key: slices[key] for key in sorted(slices)}}


def _attach_slice_columns(element, columns: list[str]):  # (batch, keys): a KeyedBatch or a plain tuple
    batch, keys = element
    for name in columns:
        batch = batch.append_column(SLICE_PREFIX + name, batch.column(batch.schema.get_field_index(name)))
    return KeyedBatch(batch, keys)


class AttachSliceColumns(beam.PTransform):
    """Copies slice columns to ``__slice__<name>`` passthrough columns, so that transformed batches
    (whose raw columns are gone) can be sliced by them too."""

    def __init__(self, columns: list[str]):
        super().__init__()
        self._columns = list(columns)

    def expand(self, batches):
        return of_type(batches | "CopySliceColumns" >> beam.Map(_attach_slice_columns, self._columns), KeyedBatch)


class _AccumulateSlices(overlap.BackgroundDoFn):
    """Partial statistics per bundle (combiner lifting by hand): only accumulators leave the stage
    that produced the batches, whatever the runner's fusion does with the branches around it.

    Batches are added on one background thread, in order (``pipelines/runtime/overlap.py``: the sketches
    and pyarrow kernels release the GIL), while the stage goes on; ``finish_bundle`` waits for them.
    """

    def __init__(self, slice_columns: list[str], boundaries: dict[str, list[float]] | None, partition: str | None):
        self._slice_columns = slice_columns
        self._partition = partition
        self._combine = _SummaryCombineFn(boundaries)
        self._accumulators: dict[str, dict] = {}

    def start_bundle(self):
        # work a failed bundle left in flight finishes (is discarded) before the accumulators are replaced
        super().start_bundle()
        self._accumulators = {}

    def _add(self, batch: pa.RecordBatch) -> None:
        slices = slice_batches(batch, self._slice_columns, whole=self._partition is None)
        if self._partition is not None:  # ALL is made from the partition's slices (finish_bundle)
            slices = itertools.chain(slice_batches(batch, [self._partition], whole=False), slices)
        for key, part in slices:
            accumulator = self._accumulators.get(key) or self._combine.create_accumulator()
            self._accumulators[key] = self._combine.add_input(accumulator, part)

    def process(self, batch: pa.RecordBatch):
        self._background.submit(self._add, batch)  # adds in order, on one thread; nothing to emit

    def finish_bundle(self):
        self._background.drain()
        if self._partition is not None:
            # every row is in exactly one partition: their merge is ALL, each row added once
            parts = [copy.deepcopy(a) for k, a in self._accumulators.items() if k.startswith(f"{self._partition}=")]
            if parts:
                self._accumulators[ALL] = self._combine.merge_accumulators(parts)
        for key, accumulator in self._accumulators.items():
            yield beam.transforms.window.GlobalWindows.windowed_value((key, accumulator))
        self._accumulators = {}


class _MergeAccumulators(beam.CombineFn):
    """Merges partial accumulators of ``_SummaryCombineFn`` and extracts the statistics."""

    def __init__(self, boundaries: dict[str, list[float]] | None):
        self._combine = _SummaryCombineFn(boundaries)

    def create_accumulator(self):
        return self._combine.create_accumulator()

    def add_input(self, accumulator, partial):
        return self._combine.merge_accumulators([accumulator, partial])

    def merge_accumulators(self, accumulators):
        return self._combine.merge_accumulators(list(accumulators))

    def extract_output(self, accumulator):
        return self._combine.extract_output(accumulator)


class GenerateStatistics(beam.PTransform):
    """RecordBatches (one PCollection, or a tuple of them described together) -> one statistics
    dict (see the module docstring).

    Columns whose names start with ``__`` (passthrough columns) are not described.
    """

    def __init__(
        self,
        slice_columns: list[str] = (),
        boundaries: dict[str, list[float]] | None = None,
        partition: str | None = None,
    ):
        """Args:
        slice_columns: Raw columns to slice by (besides ``ALL``).
        boundaries: Histogram bins to use instead of the data's own quantiles (for comparing a
            serving batch with training statistics).
        partition: A slice column every row has exactly one value of (the split): its slices are
            described and ``ALL`` is their merge, so that each row is added once, not twice.
        """
        super().__init__()
        self._slice_columns = list(slice_columns)
        self._boundaries = boundaries
        self._partition = partition

    def expand(self, batches):
        inputs = batches if isinstance(batches, tuple) else (batches,)
        partials = tuple(
            pcoll
            | f"AccumulateSlices{i}"
            >> beam.ParDo(_AccumulateSlices(self._slice_columns, self._boundaries, self._partition))
            for i, pcoll in enumerate(inputs)
        )
        return (
            partials
            | "FlattenPartials" >> beam.Flatten()
            | "MergeSlices" >> beam.CombinePerKey(_MergeAccumulators(self._boundaries))
            | "CollectSlices" >> beam.combiners.ToList()
            | "Assemble" >> beam.Map(_assemble, self._boundaries)
        )


def proto_path(json_path: str) -> str:
    """Where the ``FeatureStats.pb`` of a statistics JSON goes: ``stats/pre_transform.json`` ->
    ``stats/pre_transform/FeatureStats.pb`` (TFX's file name, one folder per stage)."""
    return json_path.removesuffix(".json") + "/FeatureStats.pb"


class WriteStatistics(beam.PTransform):
    """Writes the statistics dict to one JSON file at ``path`` and, with ``with_proto``, the same
    figures as a TFDV ``DatasetFeatureStatisticsList`` at :func:`proto_path`
    (``pipelines/quality/feature_stats.py``)."""

    def __init__(self, path: str, with_proto: bool = False):
        super().__init__()
        self._path = path
        self._with_proto = with_proto

    def expand(self, statistics):
        return statistics | "WriteJson" >> beam.Map(_write_statistics, self._path, self._with_proto)


def _write_statistics(stats: dict, path: str, with_proto: bool) -> str:
    """Writes the one statistics dict (a retried write writes the same bytes again)."""
    files.write_json(path, stats, indent=1)
    if with_proto:
        from pipelines.quality import feature_stats

        feature_stats.write_proto(stats, proto_path(path))
    return path


def statistics_of(
    batches: list[pa.RecordBatch], slice_columns: list[str] = (), boundaries: dict[str, list[float]] | None = None
) -> dict:
    """The statistics of in-memory batches, without Beam (for tests and small data)."""
    combine = _SummaryCombineFn(boundaries)
    accumulators: dict[str, dict] = {}
    for batch in batches:
        for key, part in slice_batches(batch, list(slice_columns)):
            accumulators[key] = combine.add_input(accumulators.get(key) or combine.create_accumulator(), part)
    return _assemble([(key, combine.extract_output(acc)) for key, acc in accumulators.items()], boundaries)
