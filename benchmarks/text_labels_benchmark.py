"""Transcript consensus against a planted truth, side by side with crowd-kit's ROVER.

    .venv/bin/python benchmarks/text_labels_benchmark.py --items 2000 --crowdkit /tmp/ckvenv/bin/python

Generates sentences (the truth) and five annotators per item who substitute, drop and insert words
at their own rates, add fillers ("um", "uh") and punctuation, and sometimes mark a word
``[unintelligible]``. Runs ``skewless labels --kind text`` (whole job) and, if ``--crowdkit`` names a
Python with crowd-kit installed (it cannot share Skewless's environment), crowd-kit's ``ROVER`` on
the same transcripts normalised the same way; prints each consensus's WER against the truth.
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipelines.labels import transcripts  # noqa: E402

WORDS = (
    "the a weather today tomorrow rain sun cloud wind cold warm morning evening city river road car train bus "
    "will be is was very quite north south east west light heavy clear storm snow"
).split()

_CROWDKIT = """
import json, sys, pandas as pd
from crowdkit.aggregation import ROVER
rows = json.load(open(sys.argv[1]))
frame = pd.DataFrame(rows, columns=["task", "worker", "text"])
result = ROVER(tokenizer=lambda s: s.split(), detokenizer=lambda w: " ".join(w)).fit_predict(frame)
json.dump({task: text for task, text in result.items()}, open(sys.argv[2], "w"))
"""


def generate(items: int, seed: int = 3):
    rng = random.Random(seed)
    annotators = {f"w{i}": (0.03 + 0.04 * i, 0.02 + 0.02 * i) for i in range(8)}  # (substitution, drop) rates
    truth, rows = {}, []
    for item in range(items):
        sentence = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        truth[f"clip{item}"] = sentence
        for name in rng.sample(sorted(annotators), 5):
            sub, drop = annotators[name]
            words = []
            for word in sentence:
                roll = rng.random()
                if roll < drop:
                    continue
                if roll < drop + sub:
                    word = rng.choice(WORDS)
                if rng.random() < 0.02:
                    words.append(rng.choice(WORDS))  # insertion
                if rng.random() < 0.01:
                    word = "[unintelligible]"
                words.append(word)
            text = " ".join(words)
            if rng.random() < 0.3:
                text = rng.choice(["um, ", "uh ", "Um... "]) + text
            if rng.random() < 0.5:
                text = text.capitalize() + "."
            rows.append([f"clip{item}", name, text])
    return truth, rows


def _wer_against(truth: dict, consensus: dict) -> float:
    errors = sum(transcripts.Levenshtein.distance(truth[k], consensus.get(k, "").split()) for k in truth)
    return errors / sum(len(v) for v in truth.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--crowdkit", metavar="PYTHON", help="a Python interpreter with crowd-kit installed")
    args = parser.parse_args(argv)
    truth, rows = generate(args.items)
    normaliser = transcripts.Normaliser()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "transcripts.csv")
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([["item", "annotator", "label"], *rows])
        out = os.path.join(folder, "out")
        started = time.time()
        subprocess.run(
            [
                os.path.join(ROOT, ".venv", "bin", "skewless"),
                "labels",
                "--kind",
                "text",
                "--annotations",
                path,
                "--output",
                out,
                "--quiet",
                "--lineage-db",
                os.path.join(folder, "lineage.db"),
            ],
            check=True,
        )
        ours_seconds = time.time() - started
        with open(os.path.join(out, "consensus.csv"), newline="") as handle:
            ours = {r["item"]: r["consensus"] for r in csv.DictReader(handle)}
        agreement = json.load(open(os.path.join(out, "agreement.json")))
        print(f"{'consensus':<28} {'WER vs truth':>12} {'seconds':>8}")
        print(f"{'skewless labels --kind text':<28} {_wer_against(truth, ours):>12.4f} {ours_seconds:>8.1f}")
        if args.crowdkit:
            data = os.path.join(folder, "ck.json")
            json.dump([[r[0], r[1], " ".join(normaliser.words(r[2]))] for r in rows], open(data, "w"))
            result = os.path.join(folder, "ck_out.json")
            script = os.path.join(folder, "ck.py")
            open(script, "w").write(_CROWDKIT)
            started = time.time()
            subprocess.run([args.crowdkit, script, data, result], check=True)
            theirs = json.load(open(result))
            print(f"{'crowd-kit ROVER':<28} {_wer_against(truth, theirs):>12.4f} {time.time() - started:>8.1f}")
        best = {k: " ".join(v) for k, v in truth.items()}
        print(
            f"(truth vs itself {_wer_against(truth, best):.4f}; annotators' mean pairwise WER "
            f"{agreement['mean_pairwise_wer']:.4f}; HLP WER {agreement['hlp']['value']:.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
