"""Latency and throughput of the exported serving signatures, in-process.

    .venv/bin/python benchmarks/serving_benchmark.py out/demo

Needs a `skewless run` output (for `serving_model/`) and, for `serving_default`, a trained model
(`skewless train --transform-output out/demo`). Requests are raw serialized tf.Examples built from
the bundled sample. Single-request latency: p50 and p99 over 2,000 calls of one example each;
throughput: rows per second in batches of 1,000 over 3 seconds. Warm-up calls are not counted.

The reference row is the baseline the serving issue names, measured here in the same process: the
TFX taxi graph is the run's own transform graph without what Skewless adds (``row_id`` and the
metadata columns, pruned from the outputs), behind the same ``tf.io.parse_example``, called as a
plain ``tf.function`` (needs the run's ``transform_fn/``). Signatures and reference are measured
alternately, ``--repeat`` times, so machine drift hits both alike.
"""

import argparse
import csv
import os
import pathlib
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def raw_examples(schema, limit: int) -> list[bytes]:
    """Raw tf.Examples from the bundled sample, typed per the schema, empty cells left out."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    types = {f.name: f.type for f in schema.feature}
    examples = []
    with open(ROOT / "schemas" / "taxi" / "data.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            feature = {}
            for name, text in row.items():
                if text == "" or name == "tips":  # serving requests carry no label
                    continue
                if types[name] == schema_pb2.INT:
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(text)]))
                elif types[name] == schema_pb2.FLOAT:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(text)]))
                else:
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
            examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
            if len(examples) == limit:
                break
    return examples


def measure(signature, examples: list[bytes]) -> dict:
    import tensorflow as tf

    singles = [tf.constant([e]) for e in examples[:2000]]
    for request in singles[:200]:
        signature(examples=request)
    latencies = []
    for request in singles:
        started = time.perf_counter()
        signature(examples=request)
        latencies.append(time.perf_counter() - started)
    batch = tf.constant(examples[:1000])
    for _ in range(20):
        signature(examples=batch)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        signature(examples=batch)
        calls += 1
    elapsed = time.perf_counter() - started
    return {
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "rows_per_s": calls * 1000 / elapsed,
    }


def reference_graph(run_dir: pathlib.Path):
    """The TFX taxi graph: the run's transform graph without row_id and metadata columns."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from transforms.common import ROW_ID

    tft_output = tft.TFTransformOutput(str(run_dir))
    spec = tft_output.raw_feature_spec()
    layer = tft_output.transform_features_layer()
    raw_names = set(spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def transform(examples):
        outputs = layer(tf.io.parse_example(examples, spec))
        return {k: v for k, v in outputs.items() if k != ROW_ID and k not in raw_names}

    return transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=pathlib.Path)
    parser.add_argument("--repeat", type=int, default=1, help="measure every target this many times")
    parser.add_argument("--no-reference", action="store_true", help="skip the TFX taxi graph reference")
    args = parser.parse_args()
    import tensorflow as tf

    from pipelines.prepare.export import raw_schema_of

    schema = raw_schema_of(str(args.run_dir / "serving_model"))
    examples = raw_examples(schema, 2000)
    targets = [("transform_features", args.run_dir / "serving_model", "transform_features")]
    if (args.run_dir / "model" / "serving").is_dir():
        targets.append(("serving_default", args.run_dir / "model" / "serving", "serving_default"))
    functions = [(name, tf.saved_model.load(str(path)).signatures[signature]) for name, path, signature in targets]
    if not args.no_reference:
        functions.append(("reference: TFX taxi graph", reference_graph(args.run_dir)))
    print(f"{'signature':<26} {'p50 ms':>8} {'p99 ms':>8} {'rows/s (batch 1000)':>20}")
    for _ in range(args.repeat):
        for name, function in functions:
            figures = measure(function, examples)
            print(f"{name:<26} {figures['p50_ms']:>8.3f} {figures['p99_ms']:>8.3f} {figures['rows_per_s']:>20,.0f}")


if __name__ == "__main__":
    main()
