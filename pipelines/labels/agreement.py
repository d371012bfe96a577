"""Inter-annotator agreement measures, vectorised over integer-coded annotations.

Annotations are three parallel integer arrays: ``items`` (0..n_items-1), ``annotators``
(0..n_annotators-1) and ``labels`` (0..n_labels-1). Every function here is pure numpy and is
checked against published worked examples (Fleiss 1971; Krippendorff 2011).
"""

import numpy as np

__all__ = [
    "cohen_kappa",
    "fleiss_kappa",
    "item_label_counts",
    "krippendorff_alpha",
    "mean_pairwise_cohen_kappa",
    "most_confused_pairs",
    "per_class_agreement",
    "percent_agreement",
]


def item_label_counts(items: np.ndarray, labels: np.ndarray, n_items: int, n_labels: int) -> np.ndarray:
    """The items x labels matrix of how many annotators gave each label to each item."""
    return np.bincount(items * n_labels + labels, minlength=n_items * n_labels).reshape(n_items, n_labels)


def _pairable(counts: np.ndarray) -> np.ndarray:
    return counts[counts.sum(axis=1) >= 2]


def percent_agreement(counts: np.ndarray) -> float:
    """Mean over items (with 2+ labels) of the share of annotator pairs that agree."""
    counts = _pairable(counts)
    n = counts.sum(axis=1)
    return float(np.mean((np.square(counts).sum(axis=1) - n) / (n * (n - 1)))) if len(counts) else float("nan")


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories count matrix (items may have different numbers of
    ratings; those with fewer than 2 are skipped). Fleiss (1971), Table 1: 0.430."""
    counts = _pairable(counts)
    if not len(counts):
        return float("nan")
    p_bar = percent_agreement(counts)
    p_j = counts.sum(axis=0) / counts.sum()
    p_e = float(np.square(p_j).sum())
    return (p_bar - p_e) / (1 - p_e) if p_e < 1 else float("nan")


def per_class_agreement(counts: np.ndarray) -> np.ndarray:
    """Specific agreement per class: of the annotator pairs in which one gave class j, the share
    in which the other gave j too."""
    counts = _pairable(counts)
    n = counts.sum(axis=1, keepdims=True)
    agree = (counts * (counts - 1)).sum(axis=0)
    possible = (counts * (n - 1)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(possible > 0, agree / np.maximum(possible, 1), np.nan)


def _coincidences(counts: np.ndarray) -> np.ndarray:
    """Krippendorff's coincidence matrix from a units x values count matrix."""
    counts = _pairable(counts).astype(np.float64)
    m = counts.sum(axis=1)
    weighted = counts / (m - 1)[:, None]
    coincidence = weighted.T @ counts
    coincidence[np.diag_indices_from(coincidence)] -= weighted.sum(axis=0)
    return coincidence


def most_confused_pairs(counts: np.ndarray, names: list[str], top: int = 5) -> list[dict]:
    """Label pairs most often given to the same item, as a share of all disagreeing pairs."""
    coincidence = _coincidences(counts)
    upper = np.triu(coincidence + coincidence.T, k=1) / 2
    total = upper.sum()
    order = np.dstack(np.unravel_index(np.argsort(-upper, axis=None), upper.shape))[0]
    result = []
    for a, b in order[:top]:
        if upper[a, b] <= 0:
            break
        result.append(
            {"labels": [names[a], names[b]], "pairs": float(upper[a, b]), "share": float(upper[a, b] / total)}
        )
    return result


def krippendorff_alpha(counts: np.ndarray, values: np.ndarray | None = None, level: str = "nominal") -> float:
    """Krippendorff's alpha from a units x values count matrix (missing ratings simply absent).

    Args:
        counts: How many coders gave each value to each unit.
        values: The numeric value of each column (needed for interval and ratio; ordinal uses the
            column order); defaults to 0..n-1.
        level: ``nominal``, ``ordinal``, ``interval`` or ``ratio``.

    Returns:
        Alpha. Krippendorff (2011)'s 4 coders x 12 units example: nominal 0.743, ordinal 0.815,
        interval 0.849, ratio 0.797.
    """
    coincidence = _coincidences(counts)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    values = np.arange(len(n_c), dtype=np.float64) if values is None else np.asarray(values, dtype=np.float64)
    c, k = np.meshgrid(values, values, indexing="ij")
    if level == "nominal":
        delta = (c != k).astype(np.float64)
    elif level == "interval":
        delta = np.square(c - k)
    elif level == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.nan_to_num(np.square((c - k) / (c + k)))
    elif level == "ordinal":
        cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
        i, j = np.meshgrid(np.arange(len(n_c)), np.arange(len(n_c)), indexing="ij")
        low, high = np.minimum(i, j), np.maximum(i, j)
        delta = np.square(cumulative[high + 1] - cumulative[low] - (n_c[i] + n_c[j]) / 2)
    else:
        raise ValueError(f"unknown level {level!r}: nominal, ordinal, interval or ratio")
    observed = float((coincidence * delta).sum())
    expected = float((np.outer(n_c, n_c) * delta).sum()) / (n - 1)
    return 1 - observed / expected if expected > 0 else float("nan")


def cohen_kappa(confusion: np.ndarray) -> float:
    """Cohen's kappa from a two-annotator confusion matrix."""
    total = confusion.sum()
    if total == 0:
        return float("nan")
    observed = np.trace(confusion) / total
    expected = float((confusion.sum(axis=0) * confusion.sum(axis=1)).sum()) / total**2
    return (observed - expected) / (1 - expected) if expected < 1 else float("nan")


def mean_pairwise_cohen_kappa(
    items: np.ndarray, annotators: np.ndarray, labels: np.ndarray, n_labels: int, min_shared: int = 5
) -> tuple[float, int]:
    """Mean Cohen's kappa over annotator pairs that labelled at least ``min_shared`` common items.

    Returns:
        ``(mean kappa, number of pairs averaged)``; kappa is undefined (and skipped) for a pair
        whose labels never vary.
    """
    order = np.lexsort((annotators, items))
    items, annotators, labels = items[order], annotators[order], labels[order]
    starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
    ends = np.r_[starts[1:], len(items)]
    pair_a, pair_b, label_a, label_b = [], [], [], []
    for size in np.unique(ends - starts):
        if size < 2:
            continue
        groups = starts[(ends - starts) == size]
        first, second = np.triu_indices(size, k=1)
        index_a = (groups[:, None] + first[None, :]).ravel()
        index_b = (groups[:, None] + second[None, :]).ravel()
        pair_a.append(annotators[index_a])
        pair_b.append(annotators[index_b])
        label_a.append(labels[index_a])
        label_b.append(labels[index_b])
    if not pair_a:
        return float("nan"), 0
    pair_a, pair_b = np.concatenate(pair_a), np.concatenate(pair_b)
    label_a, label_b = np.concatenate(label_a), np.concatenate(label_b)
    n_annotators = int(annotators.max()) + 1
    pair_key = pair_a.astype(np.int64) * n_annotators + pair_b
    unique_pairs, pair_index = np.unique(pair_key, return_inverse=True)
    cells = np.bincount(
        (pair_index * n_labels + label_a) * n_labels + label_b, minlength=len(unique_pairs) * n_labels * n_labels
    ).reshape(len(unique_pairs), n_labels, n_labels)
    cells = cells[cells.sum(axis=(1, 2)) >= min_shared].astype(np.float64)
    totals = cells.sum(axis=(1, 2))
    observed = np.trace(cells, axis1=1, axis2=2) / np.maximum(totals, 1)
    expected = (cells.sum(axis=1) * cells.sum(axis=2)).sum(axis=1) / np.maximum(totals, 1) ** 2
    defined = expected < 1 - 1e-12
    kappas = (observed[defined] - expected[defined]) / (1 - expected[defined])
    return (float(np.mean(kappas)) if len(kappas) else float("nan")), int(len(kappas))
