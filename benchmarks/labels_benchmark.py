"""`skewless labels` on N synthetic annotations drawn from the Dawid-Skene generative model.

    .venv/bin/python benchmarks/labels_benchmark.py --annotations 1000000
    .venv/bin/python benchmarks/labels_benchmark.py --annotations 1000000 --crowdkit /tmp/ckvenv/bin/python

Items get 5 labels each from 1,000 annotators (10% spammers, the rest right 55-95% of the time)
over 4 classes. Prints wall seconds, peak RSS and accuracy against the planted truth of
`skewless labels` (a fresh process under /usr/bin/time) and, when --crowdkit names a Python with
crowd-kit installed, of crowd-kit's DawidSkene on the same file.
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SKEWLESS = shutil.which("skewless", path=os.path.dirname(sys.executable)) or "skewless"
_CROWDKIT = """
import sys, pandas as pd
from crowdkit.aggregation import DawidSkene
df = pd.read_csv(sys.argv[1]).rename(columns={"item": "task", "annotator": "worker"})
ds = DawidSkene(n_iter=100).fit_predict(df[["task", "worker", "label"]])
ds.rename("label").to_csv(sys.argv[2], index_label="item")
"""


def generate(n: int, path: pathlib.Path, seed: int = 0) -> np.ndarray:
    """Writes n annotations (5 per item); returns the true class of each item."""
    rng = np.random.default_rng(seed)
    n_items, n_annotators, per_item, n_classes = n // 5, 1000, 5, 4
    truth = rng.choice(n_classes, size=n_items, p=[0.4, 0.3, 0.2, 0.1])
    skill = rng.uniform(0.55, 0.95, n_annotators)
    skill[: n_annotators // 10] = 1 / n_classes
    items = np.repeat(np.arange(n_items), per_item)
    annotators = rng.integers(0, n_annotators, size=len(items))
    correct = rng.random(len(items)) < skill[annotators]
    labels = np.where(correct, truth[items], (truth[items] + rng.integers(1, n_classes, len(items))) % n_classes)
    with open(path, "w") as handle:
        handle.write("item,annotator,label\n")
        for start in range(0, len(items), 200_000):
            stop = start + 200_000
            block = np.stack([items[start:stop], annotators[start:stop], labels[start:stop]], axis=1)
            np.savetxt(handle, block, fmt=["i%d", "w%d", "c%d"], delimiter=",")
    return truth


def timed(command: list[str]) -> tuple[float, float]:
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024
    return hours * 3600 + minutes * 60 + seconds, peak


def accuracy(consensus_csv: pathlib.Path, truth: np.ndarray) -> float:
    import csv

    rows = list(csv.DictReader(open(consensus_csv)))
    return sum(int(r["label"][1:]) == truth[int(r["item"][1:])] for r in rows) / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--crowdkit", help="a Python interpreter with crowd-kit installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="skewless-labels-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        truth = generate(args.annotations, tmp / "annotations.csv")
        print(f"{args.annotations:,} annotations, {len(truth):,} items, 1,000 annotators, 4 classes")
        print(f"{'aggregator':<28} {'wall s':>8} {'peak RSS MB':>12} {'accuracy':>9}")
        wall, peak = timed(
            [SKEWLESS, "labels", "--annotations", str(tmp / "annotations.csv"), "--output", str(tmp / "out")]
        )
        score = accuracy(tmp / "out" / "consensus.csv", truth)
        print(f"{'skewless labels (DS)':<28} {wall:>8.1f} {peak:>12,.0f} {score:>9.4f}")
        if args.crowdkit:
            script = tmp / "crowdkit_ds.py"
            script.write_text(_CROWDKIT)
            wall, peak = timed([args.crowdkit, str(script), str(tmp / "annotations.csv"), str(tmp / "ck.csv")])
            print(f"{'crowd-kit DawidSkene':<28} {wall:>8.1f} {peak:>12,.0f} {accuracy(tmp / 'ck.csv', truth):>9.4f}")


if __name__ == "__main__":
    main()
