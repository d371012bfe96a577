"""Agreement measures against published worked examples and hand-computed cases."""

import csv

import numpy as np
import pytest

from pipelines.labels import agreement
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.unit

TABLES = PROJECT_ROOT / "data" / "agreement_tables"


def _fleiss_table() -> np.ndarray:
    rows = list(csv.reader(open(TABLES / "fleiss1971_30x5_counts.csv")))[1:]
    return np.array([[int(x) for x in row[1:]] for row in rows])


def _krippendorff_table() -> tuple[np.ndarray, np.ndarray]:
    rows = list(csv.reader(open(TABLES / "krippendorff2011_4coders_12units.csv")))[1:]
    values = sorted({int(x) for row in rows for x in row[1:] if x})
    counts = np.zeros((len(rows[0]) - 1, len(values)), dtype=int)
    for row in rows:
        for unit, cell in enumerate(row[1:]):
            if cell:
                counts[unit, values.index(int(cell))] += 1
    return counts, np.array(values, dtype=float)


def test_fleiss_kappa_of_fleiss_1971_table_1():
    assert round(agreement.fleiss_kappa(_fleiss_table()), 3) == 0.430


@pytest.mark.parametrize(
    "level, alpha", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_alpha_of_the_2011_worked_example(level, alpha):
    counts, values = _krippendorff_table()
    assert round(agreement.krippendorff_alpha(counts, values, level), 3) == alpha


def test_percent_and_per_class_agreement_by_hand():
    counts = np.array([[3, 0], [2, 1], [0, 2], [1, 0]])  # the last item has one label: not pairable
    # pairs agreeing: item 1 3/3, item 2 1/3, item 3 1/1
    assert agreement.percent_agreement(counts) == pytest.approx((1 + 1 / 3 + 1) / 3)
    # class 0: agreeing ordered pairs 6 + 2 = 8 of 3*2 + 2*2 = 10; class 1: 0 + 2 = 2 of 1*2 + 2*1 = 4
    assert agreement.per_class_agreement(counts).tolist() == pytest.approx([0.8, 0.5])


def test_cohen_kappa_by_hand():
    confusion = np.array([[20, 5], [10, 15]])  # po = 0.7, pe = (25*30 + 25*20) / 2500 = 0.5
    assert agreement.cohen_kappa(confusion) == pytest.approx(0.4)


def test_mean_pairwise_cohen_kappa_over_pairs_with_enough_shared_items():
    items = np.repeat(np.arange(6), 3)
    annotators = np.tile([0, 1, 2], 6)
    truth = np.array([0, 1, 0, 1, 0, 1])
    labels = np.stack([truth, truth, 1 - truth], axis=1).ravel()  # annotator 2 always disagrees
    kappa, pairs = agreement.mean_pairwise_cohen_kappa(items, annotators, labels, 2)
    # pairs (0,1): kappa 1; (0,2) and (1,2): kappa -1
    assert (kappa, pairs) == (pytest.approx(-1 / 3), 3)
    assert agreement.mean_pairwise_cohen_kappa(items, annotators, labels, 2, min_shared=7) == (
        pytest.approx(float("nan"), nan_ok=True),
        0,
    )


def test_most_confused_pairs():
    counts = np.array([[2, 1, 0], [1, 1, 0], [0, 1, 1], [0, 0, 2]])
    pairs = agreement.most_confused_pairs(counts, ["a", "b", "c"])
    assert [p["labels"] for p in pairs] == [["a", "b"], ["b", "c"]]
    assert pairs[0]["share"] == pytest.approx(2 / 3)
