"""Test helpers: the bundled sample, reading transformed outputs back."""

import glob
import gzip
import os
import pathlib

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE_CSV = PROJECT_ROOT / "schemas" / "taxi" / "data.csv"


def sample_lines(n: int | None = None) -> tuple[str, list[str]]:
    """The sample's header and its first ``n`` data lines (all when None), without newlines."""
    header, *lines = SAMPLE_CSV.read_text().splitlines()
    return header, lines if n is None else lines[:n]


def read_tfrecords(pattern: str) -> list[bytes]:
    """All records of the gzip TFRecord files matching ``pattern``, file by file."""
    from apache_beam.io.tfrecordio import _TFRecordUtil

    records = []
    for path in sorted(glob.glob(pattern)):
        with gzip.open(path, "rb") as handle:
            while (record := _TFRecordUtil.read_record(handle)) is not None:
                records.append(record)
    return records


def parse_examples(records: list[bytes]) -> list[dict]:
    """Serialized tf.Examples as ``{feature: tuple(values)}`` dicts (comparable, hashable values)."""
    import tensorflow as tf

    parsed = []
    for record in records:
        example = tf.train.Example.FromString(record)
        row = {}
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            row[key] = tuple(getattr(feature, kind).value) if kind else ()
        parsed.append(row)
    return parsed


def transformed_rows(output_dir, split: str) -> list[dict]:
    """The transformed examples of ``split`` under a run's output directory."""
    return parse_examples(read_tfrecords(os.path.join(str(output_dir), "transformed", f"{split}-*.tfrecord.gz")))


def as_multiset(rows: list[dict]) -> list[tuple]:
    """Rows as a sorted list of sorted item tuples, to compare regardless of order."""
    return sorted(tuple(sorted(row.items())) for row in rows)


def saved_model_tags(model_dir) -> list[list[str]]:
    """The tags of each MetaGraph in a SavedModel: ``[["transform"]]`` for tf.Transform's TF1 graphs,
    ``[["serve"]]`` for TF2 SavedModels."""
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel.FromString((pathlib.Path(model_dir) / "saved_model.pb").read_bytes())
    return [list(graph.meta_info_def.tags) for graph in model.meta_graphs]
