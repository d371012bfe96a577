"""Consensus: majority vote with reported ties, Dawid-Skene on a known generative model, HLP."""

import numpy as np
import pytest

from pipelines.labels import consensus

pytestmark = pytest.mark.unit


def test_majority_vote_breaks_ties_by_the_voters_accuracy_and_reports_them():
    # item 0: annotators 0, 1, 3 say 0, annotator 2 says 1; item 1: annotator 0 says 1, annotator 2 says 0
    items = np.array([0, 0, 0, 0, 1, 1])
    annotators = np.array([0, 1, 3, 2, 0, 2])
    labels = np.array([0, 0, 0, 1, 1, 0])
    result = consensus.majority_vote(items, labels, 2, 2, annotators, 4)
    # leave-one-out accuracy: annotator 0 1/2, annotator 2 0/2, so annotator 0's label wins the tie,
    # although label 0 is the more frequent overall
    assert result.labels.tolist() == [0, 1]
    assert result.tied.tolist() == [False, True]
    assert result.posteriors.tolist() == [[0.75, 0.25], [0.5, 0.5]]
    assert consensus.majority_vote(items, labels, 2, 2).labels.tolist() == [0, 0]  # frequency alone


def test_leave_one_out_majority():
    items = np.array([0, 0, 0, 1, 1])
    labels = np.array([0, 0, 1, 1, 0])
    target, defined = consensus.leave_one_out_majority(items, labels, 2, 2)
    assert target[:3].tolist() == [0, 0, 0] and defined.tolist() == [False, False, True, True, True]


def _generate(n_items=2000, n_annotators=30, per_item=5, seed=1):
    """The Dawid-Skene generative model: true classes, per-annotator confusion matrices."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=n_items, p=[0.5, 0.3, 0.2])
    skill = rng.uniform(0.55, 0.95, size=n_annotators)
    skill[:5] = 1 / 3  # five spammers answer at random
    items = np.repeat(np.arange(n_items), per_item)
    annotators = np.concatenate([rng.choice(n_annotators, per_item, replace=False) for _ in range(n_items)])
    correct = rng.random(len(items)) < skill[annotators]
    other = (truth[items] + rng.integers(1, 3, len(items))) % 3
    labels = np.where(correct, truth[items], other)
    return truth, items, annotators, labels


def test_dawid_skene_beats_majority_vote_and_flags_spammers():
    truth, items, annotators, labels = _generate()
    majority = consensus.majority_vote(items, labels, len(truth), 3, annotators, 30)
    ds = consensus.dawid_skene(items, annotators, labels, len(truth), 30, 3)
    assert (ds.labels == truth).mean() > (majority.labels == truth).mean() + 0.01
    assert (ds.labels == truth).mean() > 0.9
    assert ds.priors == pytest.approx([0.5, 0.3, 0.2], abs=0.03)
    quality = consensus.annotator_quality(items, annotators, labels, len(truth), 30, 3, ds.confusions)
    assert {i for i, q in enumerate(quality) if q["spammer"]} == {0, 1, 2, 3, 4}


def test_human_level_performance_against_others_and_gold_with_a_bootstrap_interval():
    truth, items, annotators, labels = _generate(n_items=500)
    vs_gold = consensus.human_level_performance(items, labels, 500, 3, reference=truth)
    assert vs_gold["accuracy"] == pytest.approx((labels == truth[items]).mean())
    low, high = vs_gold["ci95"]
    assert low < vs_gold["accuracy"] < high and high - low < 0.08
    assert consensus.human_level_performance(items, labels, 500, 3, reference=truth) == vs_gold  # seeded
    vs_others = consensus.human_level_performance(items, labels, 500, 3)
    assert 0.4 < vs_others["accuracy"] < vs_gold["accuracy"] + 0.1
