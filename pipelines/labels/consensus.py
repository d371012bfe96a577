"""Consensus labels (majority vote, Dawid-Skene), annotator quality and human-level performance.

Vectorised numpy over integer-coded annotations (``items``, ``annotators``, ``labels`` arrays, as
in ``pipelines/labels/agreement.py``): about 9 bytes per annotation, so tens of millions fit in memory.
"""

import dataclasses

import numpy as np

from pipelines.labels.agreement import item_label_counts

__all__ = [
    "Consensus",
    "annotator_quality",
    "dawid_skene",
    "human_level_performance",
    "leave_one_out_majority",
    "majority_vote",
]


@dataclasses.dataclass
class Consensus:
    """Per item: the label index, the posterior (or vote share) of every label, and whether the
    top labels tied."""

    labels: np.ndarray
    posteriors: np.ndarray
    tied: np.ndarray
    iterations: int = 0
    confusions: np.ndarray | None = None  # Dawid-Skene: annotators x true x given
    priors: np.ndarray | None = None


def _argmax_with_ties(scores: np.ndarray, preference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax per row; among equal maxima, the label with the highest ``preference`` wins."""
    best = scores.max(axis=1, keepdims=True)
    is_best = np.isclose(scores, best, rtol=0, atol=1e-12) & (best > 0)
    tied = is_best.sum(axis=1) > 1
    return np.where(is_best, preference[None, :], -np.inf).argmax(axis=1), tied


def majority_vote(items, labels, n_items: int, n_labels: int, annotators=None, n_annotators: int = 0) -> Consensus:
    """The most frequent label per item. Ties are reported and broken deterministically: by the
    summed leave-one-out accuracy of the annotators who gave each tied label (when ``annotators``
    is given), then by the label's overall frequency, then by label order."""
    counts = item_label_counts(items, labels, n_items, n_labels).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    best = counts.max(axis=1, keepdims=True)
    is_best = (counts == best) & (best > 0)
    tied = is_best.sum(axis=1) > 1
    frequency = counts.sum(axis=0)
    score = np.broadcast_to(frequency - np.arange(n_labels) * 1e-9, counts.shape).copy()
    if annotators is not None and tied.any():
        loo, defined = leave_one_out_majority(items, labels, n_items, n_labels)
        scored = np.maximum(np.bincount(annotators[defined], minlength=n_annotators), 1)
        accuracy = np.bincount(annotators[defined], weights=(labels == loo)[defined], minlength=n_annotators) / scored
        weight = np.zeros_like(counts)
        np.add.at(weight, (items, labels), accuracy[annotators])
        score = weight * (frequency.sum() + 1) + score  # accuracy first; frequency only among equals
    chosen = np.where(is_best, score, -np.inf).argmax(axis=1)
    return Consensus(chosen, shares, tied)


def dawid_skene(
    items, annotators, labels, n_items: int, n_annotators: int, n_labels: int, max_iterations: int = 100, tol=1e-5
) -> Consensus:
    """Dawid and Skene (1979): EM over per-annotator confusion matrices and class priors.

    Starts from the majority-vote shares (as crowd-kit does), then alternates the M-step (priors
    and confusion matrices from the current posteriors) and the E-step (posteriors from them),
    until the posteriors move by less than ``tol`` or ``max_iterations`` pass.
    """
    posteriors = majority_vote(items, labels, n_items, n_labels).posteriors
    eps = 1e-10
    iteration = 0
    for iteration in range(1, max_iterations + 1):  # noqa: B007 - the count is reported
        priors = posteriors.mean(axis=0) + eps
        priors /= priors.sum()
        # confusions[a, true, given] = sum of posteriors[item, true] over a's annotations "given"
        confusions = np.empty((n_annotators, n_labels, n_labels))
        cell = annotators * n_labels + labels
        annotated = posteriors[items]
        for true in range(n_labels):
            confusions[:, true, :] = np.bincount(
                cell, weights=annotated[:, true], minlength=n_annotators * n_labels
            ).reshape(n_annotators, n_labels)
        confusions += eps
        confusions /= confusions.sum(axis=2, keepdims=True)
        log_confusions = np.log(confusions)
        log_posteriors = np.empty((n_items, n_labels))
        for true in range(n_labels):
            log_posteriors[:, true] = np.log(priors[true]) + np.bincount(
                items, weights=log_confusions[annotators, true, labels], minlength=n_items
            )
        log_posteriors -= log_posteriors.max(axis=1, keepdims=True)
        updated = np.exp(log_posteriors)
        updated /= updated.sum(axis=1, keepdims=True)
        change = float(np.abs(updated - posteriors).max())
        posteriors = updated
        if change < tol:
            break
    chosen, tied = _argmax_with_ties(posteriors, priors)
    return Consensus(chosen, posteriors, tied, iteration, confusions, priors)


def leave_one_out_majority(items, labels, n_items: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """For each annotation, the majority label of the *other* annotations of its item.

    Returns:
        ``(label, defined)``: ``defined`` is False where no other annotation exists or the others
        tie (such annotations are not scored).
    """
    counts = item_label_counts(items, labels, n_items, n_labels)
    others = counts[items].copy()
    others[np.arange(len(labels)), labels] -= 1
    best = others.max(axis=1)
    defined = (best > 0) & ((others == best[:, None]).sum(axis=1) == 1)
    return others.argmax(axis=1), defined


def annotator_quality(
    items, annotators, labels, n_items: int, n_annotators: int, n_labels: int, confusions: np.ndarray | None
) -> list[dict]:
    """Per annotator: annotations, accuracy against the leave-one-out majority, the estimated
    confusion matrix (Dawid-Skene, rows = true label), and a spammer flag.

    The spammer score is the mean total-variation distance between the rows of the confusion
    matrix: 0 when the annotator answers the same way whatever the truth (a spammer), 1 when
    every true label gets its own answers. Flagged below 0.2 with 10+ annotations.
    """
    loo, defined = leave_one_out_majority(items, labels, n_items, n_labels)
    correct = np.bincount(annotators[defined], weights=(labels == loo)[defined], minlength=n_annotators)
    scored = np.bincount(annotators[defined], minlength=n_annotators)
    totals = np.bincount(annotators, minlength=n_annotators)
    result = []
    for a in range(n_annotators):
        entry = {
            "annotations": int(totals[a]),
            "accuracy_vs_others": float(correct[a] / scored[a]) if scored[a] else None,
        }
        if confusions is not None:
            matrix = confusions[a]
            rows = [0.5 * np.abs(matrix[i] - matrix[j]).sum() for i in range(n_labels) for j in range(i + 1, n_labels)]
            score = float(np.mean(rows)) if rows else 1.0
            entry["confusion"] = np.round(matrix, 4).tolist()
            entry["spammer_score"] = score
            entry["spammer"] = bool(score < 0.2 and totals[a] >= 10)
        result.append(entry)
    return result


def human_level_performance(
    items, labels, n_items: int, n_labels: int, reference: np.ndarray | None = None, resamples: int = 1000, seed=0
) -> dict:
    """Human-level performance: each annotation scored against the majority of the others on the
    same item (or against ``reference``, e.g. expert gold, per item: -1 where unknown), averaged;
    with a 95% bootstrap interval that resamples items.

    Returns:
        ``{"accuracy", "ci95": [low, high], "scored_annotations"}``.
    """
    if reference is None:
        target, defined = leave_one_out_majority(items, labels, n_items, n_labels)
    else:
        target = reference[items]
        defined = target >= 0
    correct = np.bincount(items[defined], weights=(labels == target)[defined], minlength=n_items)
    scored = np.bincount(items[defined], minlength=n_items).astype(np.float64)
    if scored.sum() == 0:
        return {"accuracy": None, "ci95": [None, None], "scored_annotations": 0}
    # Resampling items with replacement only depends on how many items of each (correct, scored)
    # kind are drawn, so draw those counts (a multinomial over the distinct kinds) instead of items.
    kinds, per_kind = np.unique(np.stack([correct, scored], axis=1), axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(n_items, per_kind / n_items, size=resamples)
    ratios = (drawn @ kinds[:, 0]) / np.maximum(drawn @ kinds[:, 1], 1)
    return {
        "accuracy": float(correct.sum() / scored.sum()),
        "ci95": [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))],
        "scored_annotations": int(scored.sum()),
    }
