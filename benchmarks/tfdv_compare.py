"""Skewless's statistics and skew checks beside TFDV's own, on the same rows.

    make baselines-tfdv                       # .venv-tfdv: TFDV 1.16.1 and its own TensorFlow
    .venv/bin/python benchmarks/tfdv_compare.py [--rows 1000000]

For the bundled taxi sample and for ``--rows`` generated rows (``benchmarks/generate_taxi.py``):

1. ``skewless run`` writes ``stats/pre_transform/FeatureStats.pb``; TFDV loads it
   (``tfdv.load_stats_binary``) and reads its first dataset (``All Examples``).
2. TFDV's ``generate_statistics_from_csv`` on the same rows (every row is valid: the run
   dead-letters none), typed by the same schema, is compared with ours feature by feature: counts,
   missing, min and max exactly; mean and std to 1e-5 relative; top values and their counts
   exactly; our 10-quantile boundaries against the rows' true ranks (within the sketch's stated
   rank error, 0.5%, plus the width of a tie at the boundary).
3. Skew on three serving batches (3,000 of the sample's own rows, the same with ``fare`` doubled,
   and with ``payment_type`` all ``Cash``): ``skewless check-skew`` against TFDV's
   ``validate_statistics`` with the same schema and comparators (a Jensen-Shannon threshold of 0.1
   on every numeric feature, L-infinity 0.1 on every string one): the features each flags, with
   both distances.

Prints markdown tables and the time each tool takes.
"""

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "schemas" / "taxi" / "data.csv"
SCHEMA = ROOT / "schemas" / "taxi" / "schema.pbtxt"
TFDV_PYTHON = ROOT / ".venv-tfdv" / "bin" / "python"
SKEWLESS = [str(pathlib.Path(sys.executable).parent / "skewless")]
SERVING_ROWS = 3000

# Runs in .venv-tfdv: TFDV's statistics of a CSV and its skew verdicts; prints one JSON document.
TFDV_SCRIPT = r"""
import json, sys, time
import numpy as np
import pandas as pd
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from google.protobuf import text_format

task = json.loads(sys.argv[1])
schema = tfdv.load_schema_text(task["schema"])
out = {}
ours = tfdv.load_stats_binary(task["ours"])
out["loaded"] = [d.name for d in ours.datasets]
options = tfdv.StatsOptions(schema=schema, infer_type_from_schema=True)
started = time.time()
theirs = tfdv.generate_statistics_from_csv(task["csv"], stats_options=options)
out["seconds"] = time.time() - started
data = pd.read_csv(task["csv"], dtype={"company": str, "payment_type": str})


def feature_map(dataset):
    return {f.path.step[0]: f for f in dataset.features}


mine, tfdvs = feature_map(ours.datasets[0]), feature_map(theirs.datasets[0])
rows = []
for name in sorted(mine):
    a, b = mine[name], tfdvs.get(name)
    if b is None:
        rows.append({"feature": name, "problem": "TFDV has no such feature"})
        continue
    row = {"feature": name}
    if a.HasField("num_stats"):
        x, y = a.num_stats, b.num_stats
        row["count"] = [x.common_stats.num_non_missing, y.common_stats.num_non_missing]
        row["missing"] = [x.common_stats.num_missing, y.common_stats.num_missing]
        row["min"], row["max"] = [x.min, y.min], [x.max, y.max]
        row["mean"], row["std"] = [x.mean, y.mean], [x.std_dev, y.std_dev]
        values = data[name].dropna().to_numpy(dtype=np.float64)
        if a.type == statistics_pb2.FeatureNameStatistics.FLOAT:  # FLOAT features are float32 in a tf.Example
            values = values.astype(np.float32).astype(np.float64)
        values = np.sort(values)
        quantiles = [h for h in x.histograms if h.type == statistics_pb2.Histogram.QUANTILES][0]
        worst = 0.0
        for index, bucket in enumerate(quantiles.buckets[:-1]):
            target = (index + 1) / len(quantiles.buckets)
            below = np.searchsorted(values, bucket.high_value, side="left") / len(values)
            upto = np.searchsorted(values, bucket.high_value, side="right") / len(values)
            worst = max(worst, 0.0 if below <= target <= upto else min(abs(target - below), abs(target - upto)))
        row["quantile_rank_error"] = worst
    else:
        x, y = a.string_stats, b.string_stats
        row["count"] = [x.common_stats.num_non_missing, y.common_stats.num_non_missing]
        row["missing"] = [x.common_stats.num_missing, y.common_stats.num_missing]
        row["top"] = [[(v.value, int(v.frequency)) for v in x.top_values[:10]],
                      [(v.value, int(v.frequency)) for v in y.top_values[:10]]]
        row["unique"] = [x.unique, y.unique]
    rows.append(row)
out["features"] = rows

# skew: the same thresholds as check-skew's defaults on every feature the comparison covers
for feature in schema.feature:
    if "SERVING" in feature.not_in_environment:
        continue
    if feature.type == schema_pb2.BYTES:
        feature.skew_comparator.infinity_norm.threshold = 0.1
    else:
        feature.skew_comparator.jensen_shannon_divergence.threshold = 0.1
out["our_anomalies"] = {  # our check-skew --anomalies files, as TFDV reads them
    batch: sorted(tfdv.load_anomalies_text(path).anomaly_info) for batch, path in task["our_anomalies"].items()
}
out["skew"] = {}
for batch, path in task["serving"].items():
    started = time.time()
    serving = tfdv.generate_statistics_from_csv(path, stats_options=options)
    anomalies = tfdv.validate_statistics(theirs, schema, serving_statistics=serving)
    seconds = time.time() - started
    measured = {}
    for info in anomalies.drift_skew_info:
        for m in info.skew_measurements:
            measured[info.path.step[0]] = m.value
    out["skew"][batch] = {
        "flagged": sorted(anomalies.anomaly_info),
        "distances": measured,
        "seconds": seconds,
    }
print(json.dumps(out))
"""


def _run(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    return result, time.time() - started


def _serving_batches(folder: pathlib.Path) -> dict[str, str]:
    with open(SAMPLE, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for _, row in zip(range(SERVING_ROWS), reader, strict=False)]
        columns = reader.fieldnames
    batches = {
        "own rows": rows,
        "fare doubled": [dict(row, fare=str(float(row["fare"]) * 2) if row["fare"] else "") for row in rows],
        "payment_type all Cash": [dict(row, payment_type="Cash") for row in rows],
    }
    paths = {}
    for name, batch in batches.items():
        path = folder / (name.replace(" ", "_") + ".csv")
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(batch)
        paths[name] = str(path)
    return paths


def _ours_skew(run_dir: pathlib.Path, path: str, anomalies: pathlib.Path) -> dict:
    result, seconds = _run(
        [*SKEWLESS, "check-skew", "--transform-output", str(run_dir), "--input", path, "--quiet"]
        + ["--anomalies", str(anomalies)]
    )
    report = json.loads(result.stdout)
    distances = {name: entry["value"] for name, entry in report["features"].items()}
    return {
        "flagged": sorted(report["failed_features"]),
        "distances": distances,
        "seconds": seconds,
        "anomalies": str(anomalies),
    }


def _agreement(rows: list[dict]) -> tuple[list[str], list[str]]:
    """Lines of the statistics table and the features that disagree."""
    lines, disagree = [], []
    for row in rows:
        if "problem" in row:
            lines.append(f"| {row['feature']} | {row['problem']} | | | |")
            disagree.append(row["feature"])
            continue
        exact = row["count"][0] == row["count"][1] and row["missing"][0] == row["missing"][1]
        if "mean" in row:
            exact = exact and row["min"][0] == row["min"][1] and row["max"][0] == row["max"][1]
            close = all(abs(a - b) <= 1e-5 * max(abs(b), 1e-12) for a, b in (row["mean"], row["std"]))
            figure = f"mean {row['mean'][0]:.6g} / {row['mean'][1]:.6g}, std {row['std'][0]:.6g} / {row['std'][1]:.6g}"
            quantiles = f"{row['quantile_rank_error']:.4f}"
            ok = exact and close and row["quantile_rank_error"] <= 0.005
        else:
            ok = exact and row["top"][0] == row["top"][1]
            figure = f"top {row['top'][0][:2]}, unique {row['unique'][0]} / {row['unique'][1]}"
            quantiles = "-"
        lines.append(
            f"| {row['feature']} | {row['count'][0]:,} / {row['count'][1]:,} | {figure} | {quantiles} | "
            f"{'agree' if ok else 'DIFFER'} |"
        )
        if not ok:
            disagree.append(row["feature"])
    return lines, disagree


def compare(csv_path: pathlib.Path, label: str, folder: pathlib.Path, tfdv_python: pathlib.Path) -> None:
    run_dir = folder / f"run-{label}"
    result, run_seconds = _run([*SKEWLESS, "run", "--input", str(csv_path), "--output", str(run_dir), "--quiet"])
    if result.returncode:
        sys.exit(result.stderr[-2000:])
    record = json.loads((run_dir / "run.json").read_text())
    print(
        f"\n## {label}: {record['counts']['rows_read']:,} rows ({record['counts']['rows_dead_lettered']} dead-lettered)"
    )
    serving = _serving_batches(folder) if label == "sample" else {}
    ours = {
        batch: _ours_skew(run_dir, path, folder / f"anomalies-{batch.replace(' ', '_')}.pbtxt")
        for batch, path in serving.items()
    }
    task = {
        "schema": str(SCHEMA),
        "ours": str(run_dir / "stats" / "pre_transform" / "FeatureStats.pb"),
        "csv": str(csv_path),
        "serving": serving,
        "our_anomalies": {batch: result["anomalies"] for batch, result in ours.items()},
    }
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result, _ = _run([str(tfdv_python), "-c", TFDV_SCRIPT, json.dumps(task)], env=environment)
    if result.returncode:
        sys.exit(result.stderr[-3000:])
    tfdv = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"TFDV loads our FeatureStats.pb: datasets {tfdv['loaded'][:4]}{' ...' if len(tfdv['loaded']) > 4 else ''}")
    print(f"time: skewless run (the whole job) {run_seconds:.1f} s; TFDV statistics alone {tfdv['seconds']:.1f} s")
    print("\n| feature | count (ours / TFDV) | figures (ours / TFDV) | our quantiles' rank error | verdict |")
    print("|---|---|---|---|---|")
    lines, disagree = _agreement(tfdv["features"])
    print("\n".join(lines))
    print(
        f"\n{len(lines) - len(disagree)} of {len(lines)} features agree" + (f"; differ: {disagree}" if disagree else "")
    )
    if not serving:
        return
    print(
        "\n| serving batch | flagged by check-skew | its --anomalies read by TFDV | flagged by TFDV | "
        "fare: ours / TFDV | trip_seconds: ours / TFDV | payment_type: ours / TFDV | seconds: ours / TFDV |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for batch in serving:
        mine, theirs = ours[batch], tfdv["skew"][batch]

        def both(name, mine=mine, theirs=theirs):
            return (
                f"{mine['distances'].get(name, float('nan')):.3f} / {theirs['distances'].get(name, float('nan')):.3f}"
            )

        read_back = ", ".join(tfdv["our_anomalies"][batch]) or "none"
        print(
            f"| {batch} | {', '.join(mine['flagged']) or 'none'} | {read_back} | "
            f"{', '.join(theirs['flagged']) or 'none'} | {both('fare')} | {both('trip_seconds')} | "
            f"{both('payment_type')} | {mine['seconds']:.1f} / {theirs['seconds']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="generated rows (0: the sample only)")
    parser.add_argument("--tfdv-python", type=pathlib.Path, default=TFDV_PYTHON)
    parser.add_argument("--work", type=pathlib.Path, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    if not args.tfdv_python.exists():
        sys.exit(f"{args.tfdv_python} is missing: run `make baselines-tfdv` first")
    with tempfile.TemporaryDirectory(prefix="tfdv-compare-") as scratch:
        folder = args.work or pathlib.Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        compare(SAMPLE, "sample", folder, args.tfdv_python)
        if args.rows:
            generated = folder / f"taxi_{args.rows}.csv"
            subprocess.run(
                [sys.executable, str(ROOT / "benchmarks" / "generate_taxi.py"), "--rows", str(args.rows)]
                + ["--output", str(generated)],
                check=True,
            )
            compare(generated, f"{args.rows:,} generated rows", folder, args.tfdv_python)


if __name__ == "__main__":
    main()
