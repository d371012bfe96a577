"""Bounding-box labels from several annotators: matching, agreement, conventions, consensus, HLP.

Everything here works on one item (image) at a time, so the labels job runs it per item on Beam and
only sums small per-item results afterwards.

* **Matching**: between two annotators' boxes on an item, the Hungarian assignment maximising IoU
  (``scipy.optimize.linear_sum_assignment``); pairs below ``iou_threshold`` (0.5) are not matches.
* **Agreement** per item and annotator pair: mean IoU of matched boxes, the share of boxes left
  unmatched, and whether the box counts differ.
* **Conventions**: a box of annotator A that covers two or more of B's boxes (each at least 70%
  inside it) is A *merging* what B splits (one box around two animals, or around the visible parts
  of one); matched boxes whose area ratio is 1.5 or more are a *size* difference (e.g. one annotator
  includes the occluded tail). Items with either go to review; an annotator with either on a large
  share of their items has a convention of their own (``detect_conventions``).
* **Consensus** (the documented fusion rule): boxes are clustered greedily, annotator by annotator,
  by Hungarian matching against the clusters' current fused boxes (IoU >= threshold, at most one box
  per annotator per cluster, preferring the clusters more annotators already support: the matching
  maximises IoU x cluster size); a cluster with boxes from at least ``min_annotators`` annotators (a
  majority by default) becomes a consensus box: the coordinate-wise mean of its boxes (weighted box
  fusion with equal weights) with the majority class.
* **HLP**: each annotator against the consensus of the others on the same item: the item score is
  the sum of matched IoUs divided by the larger of the two box counts (an unmatched box scores 0).
"""

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "Box",
    "consensus_boxes",
    "detect_conventions",
    "item_summary",
    "iou_matrix",
    "match_boxes",
    "score_against",
]

IOU_THRESHOLD = 0.5
COVER_FRACTION = 0.7
SIZE_RATIO = 1.5

Box = tuple[float, float, float, float, str]  # x_min, y_min, x_max, y_max, class


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return width * height


def _coords(boxes: Sequence[Box]) -> np.ndarray:
    return np.array([b[:4] for b in boxes], dtype=np.float64).reshape(-1, 4)


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b``."""
    ca, cb = _coords(a), _coords(b)
    inter = _intersections(ca, cb)
    union = _areas(ca)[:, None] + _areas(cb)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(a: Sequence[Box], b: Sequence[Box], threshold: float = IOU_THRESHOLD) -> list[tuple[int, int, float]]:
    """Hungarian matching on IoU: ``(index in a, index in b, IoU)`` for pairs with IoU >= threshold."""
    if not len(a) or not len(b):
        return []
    ious = iou_matrix(a, b)
    rows, cols = linear_sum_assignment(-ious)
    return [(int(r), int(c), float(ious[r, c])) for r, c in zip(rows, cols, strict=True) if ious[r, c] >= threshold]


def _covers(a: Sequence[Box], b: Sequence[Box]) -> int:
    """How many of ``a``'s boxes each contain two or more of ``b``'s boxes (>= COVER_FRACTION inside)."""
    if not len(a) or len(b) < 2:
        return 0
    cb = _coords(b)
    inside = _intersections(_coords(a), cb) / np.maximum(_areas(cb)[None, :], 1e-12)
    return int(((inside >= COVER_FRACTION).sum(axis=1) >= 2).sum())


def compare_annotators(a: Sequence[Box], b: Sequence[Box], threshold: float = IOU_THRESHOLD) -> dict:
    """One item, two annotators: matches, IoUs, unmatched boxes, merges and size ratios."""
    matches = match_boxes(a, b, threshold)
    area_a, area_b = _areas(_coords(a)), _areas(_coords(b))
    log_ratios = [math.log(area_a[i] / area_b[j]) for i, j, _ in matches if area_a[i] > 0 and area_b[j] > 0]
    return {
        "ious": [iou for _, _, iou in matches],
        "class_agree": [a[i][4] == b[j][4] for i, j, _ in matches],
        "classes": [a[i][4] for i, _, _ in matches],
        "unmatched": len(a) + len(b) - 2 * len(matches),
        "boxes": len(a) + len(b),
        "count_differs": len(a) != len(b),
        "a_merges": _covers(a, b),
        "b_merges": _covers(b, a),
        "log_area_ratios": log_ratios,  # log(area a / area b) of matched boxes
    }


def consensus_boxes(
    by_annotator: dict[str, Sequence[Box]], min_annotators: int | None = None, threshold: float = IOU_THRESHOLD
) -> list[dict]:
    """Fused consensus boxes of one item (see the module docstring for the rule).

    Returns:
        ``{"box": (x_min, y_min, x_max, y_max), "label", "annotators", "mean_iou"}`` per consensus box,
        sorted by position.
    """
    names = sorted(by_annotator)
    if min_annotators is None:
        min_annotators = len(names) // 2 + 1
    clusters: list[dict] = []  # {"members": [(annotator, box)], "fused": Box}
    for name in names:
        boxes = list(by_annotator[name])
        if not boxes:
            continue
        matched = set()
        if clusters:
            ious = iou_matrix(boxes, [c["fused"] for c in clusters])
            support = np.array([len(c["members"]) for c in clusters], dtype=np.float64)
            benefit = np.where(ious >= threshold, ious * support[None, :], 0.0)
            for i, j in zip(*linear_sum_assignment(-benefit), strict=True):
                if benefit[i, j] > 0:
                    clusters[j]["members"].append((name, boxes[i]))
                    clusters[j]["fused"] = _fuse([box for _, box in clusters[j]["members"]])
                    matched.add(int(i))
        for i, box in enumerate(boxes):
            if i not in matched:
                clusters.append({"members": [(name, box)], "fused": _fuse([box])})
    result = []
    for cluster in clusters:
        if len(cluster["members"]) < min_annotators:
            continue
        members = [box for _, box in cluster["members"]]
        fused = cluster["fused"]
        ious = iou_matrix(members, [fused])[:, 0]
        result.append(
            {
                "box": tuple(round(v, 6) for v in fused[:4]),
                "label": fused[4],
                "annotators": len(members),
                "mean_iou": float(ious.mean()),
            }
        )
    return sorted(result, key=lambda c: (c["box"][1], c["box"][0], c["box"][2], c["box"][3]))


def _fuse(boxes: Sequence[Box]) -> Box:
    coords = _coords(boxes).mean(axis=0)
    votes = Counter(box[4] for box in boxes).most_common()
    label = min(label for label, n in votes if n == votes[0][1])  # ties: alphabetical
    return (*coords.tolist(), label)


def score_against(boxes: Sequence[Box], reference: Sequence[Box], threshold: float = IOU_THRESHOLD) -> float | None:
    """Sum of matched IoUs over the larger box count (1 = same boxes; None when both are empty)."""
    if not len(boxes) and not len(reference):
        return None
    matches = match_boxes(boxes, reference, threshold)
    return sum(iou for _, _, iou in matches) / max(len(boxes), len(reference))


def item_summary(item: str, by_annotator: dict[str, Sequence[Box]], threshold: float = IOU_THRESHOLD) -> dict:
    """Everything the job needs from one item: pairwise comparisons, consensus, leave-one-out scores,
    per-annotator box counts and the review reasons."""
    names = sorted(by_annotator)
    pairs = [
        {"a": names[x], "b": names[y], **compare_annotators(by_annotator[names[x]], by_annotator[names[y]], threshold)}
        for x in range(len(names))
        for y in range(x + 1, len(names))
    ]
    loo = {}
    for name in names:
        others = {other: by_annotator[other] for other in names if other != name}
        if others:
            reference = [(*c["box"], c["label"]) for c in consensus_boxes(others, len(others) // 2 + 1, threshold)]
            loo[name] = score_against(by_annotator[name], reference, threshold)
    reasons = []
    for comparison in pairs:
        a, b = comparison["a"], comparison["b"]
        if comparison["a_merges"]:
            reasons.append(f"{a} draws one box where {b} draws several")
        if comparison["b_merges"]:
            reasons.append(f"{b} draws one box where {a} draws several")
        big = [r for r in comparison["log_area_ratios"] if abs(r) >= math.log(SIZE_RATIO)]
        if big:
            larger = a if np.mean(big) > 0 else b
            reasons.append(f"{larger}'s boxes are {math.exp(abs(np.mean(big))):.1f}x larger ({a} vs {b})")
    return {
        "item": item,
        "annotators": names,
        "counts": {name: len(by_annotator[name]) for name in names},
        "areas": {
            name: float(_areas(_coords(by_annotator[name])).mean()) if by_annotator[name] else None for name in names
        },
        "pairs": pairs,
        "consensus": consensus_boxes(by_annotator, None, threshold),
        "leave_one_out": loo,
        "review_reasons": reasons,
    }


def detect_conventions(summaries: Sequence[dict], min_share: float = 0.3, min_items: int = 3) -> list[dict]:
    """Annotators who systematically merge boxes, or draw larger/smaller boxes, than the others.

    For each annotator, over the items they share with others: the share of items where they merge
    boxes that another annotator draws separately (and the share where another merges theirs), and
    the geometric mean area ratio of their matched boxes to the others'. A merge share of at least
    ``min_share`` (on at least ``min_items`` items), or an area ratio of at least ``SIZE_RATIO`` (or
    at most its inverse), is reported.
    """
    merges, merged, shared, log_ratios = Counter(), Counter(), Counter(), {}
    for summary in summaries:
        for comparison in summary["pairs"]:
            a, b = comparison["a"], comparison["b"]
            shared[a] += 1
            shared[b] += 1
            merges[a] += bool(comparison["a_merges"])
            merges[b] += bool(comparison["b_merges"])
            merged[b] += bool(comparison["a_merges"])
            merged[a] += bool(comparison["b_merges"])
            log_ratios.setdefault(a, []).extend(comparison["log_area_ratios"])
            log_ratios.setdefault(b, []).extend(-r for r in comparison["log_area_ratios"])
    found = []
    for name in sorted(shared):
        share = merges[name] / shared[name]
        if merges[name] >= min_items and share >= min_share:
            found.append(
                {
                    "annotator": name,
                    "convention": "merges boxes",
                    "detail": f"draws one box where others draw several on {share:.0%} of shared item pairs",
                    "share": round(share, 4),
                }
            )
        ratios = log_ratios.get(name, [])
        if len(ratios) >= min_items:
            ratio = math.exp(float(np.mean(ratios)))
            if ratio >= SIZE_RATIO or ratio <= 1 / SIZE_RATIO:
                found.append(
                    {
                        "annotator": name,
                        "convention": "larger boxes" if ratio > 1 else "smaller boxes",
                        "detail": f"matched boxes are {ratio:.2f}x the others' area (e.g. including occluded parts)"
                        if ratio > 1
                        else f"matched boxes are {ratio:.2f}x the others' area",
                        "area_ratio": round(ratio, 4),
                    }
                )
    return found
