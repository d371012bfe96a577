"""Latency and throughput of the exported serving signatures, in-process.

    .venv/bin/python benchmarks/serving_benchmark.py out/demo

Needs a `skewless run` output (for `serving_model/`) and, for `serving_default`, a trained model
(`skewless train --transform-output out/demo`). Requests are raw serialized tf.Examples built from
the bundled sample. Single-request latency: p50 and p99 over 2,000 calls of one example each;
throughput: rows per second in batches of 1,000 over 3 seconds. Warm-up calls are not counted.
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
    with open(ROOT / "data" / "taxi" / "data.csv", newline="") as handle:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=pathlib.Path)
    args = parser.parse_args()
    import tensorflow as tf

    from pipelines.export import raw_schema_of

    schema = raw_schema_of(str(args.run_dir / "serving_model"))
    examples = raw_examples(schema, 2000)
    targets = [("transform_features", args.run_dir / "serving_model", "transform_features")]
    if (args.run_dir / "model" / "serving").is_dir():
        targets.append(("serving_default", args.run_dir / "model" / "serving", "serving_default"))
    print(f"{'signature':<20} {'p50 ms':>8} {'p99 ms':>8} {'rows/s (batch 1000)':>20}")
    for name, path, signature_name in targets:
        figures = measure(tf.saved_model.load(str(path)).signatures[signature_name], examples)
        print(f"{name:<20} {figures['p50_ms']:>8.3f} {figures['p99_ms']:>8.3f} {figures['rows_per_s']:>20,.0f}")


if __name__ == "__main__":
    main()
