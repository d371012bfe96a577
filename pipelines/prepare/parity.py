"""Training/serving parity: the serving graph must give what the Beam pipeline wrote, row by row.

During ``skewless run`` a deterministic sample of valid rows carries its raw record, re-encoded as a
tf.Example, through tf.Transform as a passthrough column; the writer stores each such raw example
beside the transformed example Beam produced for it (``parity/pairs-*.jsonl``). ``verify_parity``
feeds the raw examples to the exported serving model and compares every feature.
"""

import base64
import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines.io.coders import KeyedBatch, of_type

__all__ = [
    "AttachRawExamples",
    "PAIRS_PREFIX",
    "RAW_EXAMPLE_COLUMN",
    "compare_features",
    "parity_mask",
    "read_pairs",
    "verify_parity",
]

RAW_EXAMPLE_COLUMN = "__raw_example"
PAIRS_PREFIX = "parity/pairs"
MIN_ROWS = 100  # however small --parity-sample makes the share, a small dataset is checked on this many rows
FLOAT_TOLERANCE = 1e-6
_BATCH = 1000


def parity_mask(keys: np.ndarray, fraction: float) -> np.ndarray:
    """Which rows join the parity sample; independent of the train/eval split (which uses key % 10000)."""
    return ((keys // 10_000) % 1000) < round(fraction * 1000)


class _AttachRawExamples(beam.DoFn):
    """Samples rows by their key (``parity_mask``), and also the first rows each worker sees until
    its sample holds ``minimum`` rows: at least that many are checked (or all rows, if fewer)."""

    def __init__(self, fraction: float, minimum: int = MIN_ROWS):
        self._fraction, self._minimum = fraction, minimum
        self._encoder = None
        self._sampled = 0

    def setup(self):
        from tfx_bsl.coders import example_coder

        self._encoder = example_coder.RecordBatchToExamplesEncoder()
        self._sampled = 0

    def process(self, element):  # (batch, keys): a KeyedBatch or a plain tuple
        batch, keys = element
        sampled = parity_mask(keys, self._fraction)
        missing = self._minimum - self._sampled - int(sampled.sum())
        if missing > 0:
            sampled[np.flatnonzero(~sampled)[:missing]] = True
        self._sampled += int(sampled.sum())
        rows = np.flatnonzero(sampled)
        examples = self._encoder.encode(batch.take(pa.array(rows))) if rows.size else []
        offsets = np.zeros(batch.num_rows + 1, dtype=np.int64)
        offsets[rows + 1] = 1
        column = pa.LargeListArray.from_arrays(
            pa.array(np.cumsum(offsets)), pa.array(examples, pa.large_binary()), mask=pa.array(~sampled)
        )
        yield KeyedBatch(batch.append_column(RAW_EXAMPLE_COLUMN, column), keys)


class AttachRawExamples(beam.PTransform):
    """Adds the ``__raw_example`` column (serialized raw tf.Example, or null) to sampled rows: a
    ``fraction`` of them by key, and at least ``minimum`` in all (every row, if fewer)."""

    def __init__(self, fraction: float, minimum: int = MIN_ROWS):
        super().__init__()
        self._fraction, self._minimum = fraction, minimum

    def expand(self, batches):
        with_examples = batches | "EncodeSampledRawRows" >> beam.ParDo(
            _AttachRawExamples(self._fraction, self._minimum)
        )
        return of_type(with_examples, KeyedBatch)


def encode_pair(raw: bytes, transformed: bytes) -> str:
    """A parity pair as a JSON line."""
    return json.dumps({"raw": base64.b64encode(raw).decode(), "transformed": base64.b64encode(transformed).decode()})


def read_pairs(output_dir: str, max_rows: int) -> tuple[list[bytes], list[bytes]]:
    """Reads up to ``max_rows`` (raw, transformed) example pairs written by a run."""
    raws, transformed = [], []
    pattern = f"{output_dir.rstrip('/')}/{PAIRS_PREFIX}-*.jsonl"
    for metadata in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(metadata.path) as handle:
            for line in handle:
                if len(raws) >= max_rows:
                    return raws, transformed
                pair = json.loads(line)
                raws.append(base64.b64decode(pair["raw"]))
                transformed.append(base64.b64decode(pair["transformed"]))
    return raws, transformed


def compare_features(served: dict[str, np.ndarray], written: dict[str, np.ndarray]) -> dict[str, dict]:
    """Compares two batches of features row by row.

    Args:
        served: Feature arrays from the serving signature.
        written: Feature arrays parsed from the examples Beam wrote.

    Returns:
        Per feature: ``mismatches`` (rows that differ: strings and ints must be equal, floats within
        1e-6), ``max_abs_diff`` for numbers, and ``example`` (the first differing pair) when any.
    """
    report = {}
    for name in sorted(set(served) | set(written)):
        if name not in served or name not in written:
            missing_in = "serving" if name not in served else "beam"
            report[name] = {"mismatches": -1, "max_abs_diff": None, "example": f"absent from the {missing_in} output"}
            continue
        a, b = np.asarray(served[name]), np.asarray(written[name])
        if a.shape != b.shape:
            report[name] = {"mismatches": -1, "max_abs_diff": None, "example": f"shapes {a.shape} != {b.shape}"}
            continue
        if np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            both_nan = np.isnan(a) & np.isnan(b)
            differs = ~both_nan & ~(diff <= FLOAT_TOLERANCE)
            max_diff = float(np.nanmax(np.where(both_nan, 0.0, diff))) if diff.size else 0.0
        elif np.issubdtype(a.dtype, np.integer):
            differs = a != b
            max_diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        else:
            differs = a != b
            max_diff = None
        differs = differs.reshape(len(differs), -1).any(axis=1) if differs.ndim > 1 else differs
        entry = {"mismatches": int(differs.sum()), "max_abs_diff": max_diff}
        if differs.any():
            row = int(np.flatnonzero(differs)[0])
            entry["example"] = f"row {row}: serving {a[row]!r} vs beam {b[row]!r}"
        report[name] = entry
    return report


def verify_parity(output_dir: str, serving_model_dir: str | None = None, max_rows: int = 20_000) -> dict:
    """Feeds a run's parity sample through its serving model and compares with what Beam wrote.

    Args:
        output_dir: A ``skewless run`` output (needs ``parity/``, ``transformed_metadata/``).
        serving_model_dir: The serving SavedModel; ``<output_dir>/serving_model`` by default.
        max_rows: At most this many pairs are checked.

    Returns:
        ``{"passed", "rows_checked", "mismatched_features", "features": {name: compare_features entry}}``.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    from pipelines.prepare.export import SIGNATURE

    serving_model_dir = serving_model_dir or f"{output_dir.rstrip('/')}/serving_model"
    raws, written = read_pairs(output_dir, max_rows)
    transformed_spec = tft.TFTransformOutput(output_dir).transformed_feature_spec()
    signature = tf.saved_model.load(serving_model_dir).signatures[SIGNATURE]
    served_parts, written_parts = [], []
    for start in range(0, len(raws), _BATCH):
        served = signature(examples=tf.constant(raws[start : start + _BATCH]))
        served_parts.append({k: v.numpy() for k, v in served.items()})
        parsed = tf.io.parse_example(tf.constant(written[start : start + _BATCH]), transformed_spec)
        written_parts.append({k: v.numpy() for k, v in parsed.items()})
    if raws:
        features = compare_features(
            {k: np.concatenate([p[k] for p in served_parts]) for k in served_parts[0]},
            {k: np.concatenate([p[k] for p in written_parts]) for k in written_parts[0]},
        )
    else:
        features = {}
    mismatched = sorted(name for name, entry in features.items() if entry["mismatches"] != 0)
    return {
        "passed": bool(raws) and not mismatched,
        "rows_checked": len(raws),
        "mismatched_features": mismatched,
        "features": features,
    }
