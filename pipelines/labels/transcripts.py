"""Transcription labels from several annotators: normalising, word error rates, ROVER consensus.

* **Normaliser** (configurable, recorded in ``agreement.json``): lower case, punctuation removed,
  fillers dropped (``um``, ``uh``, ``er``, ``ah``, ``hmm``, ``mm`` by default), number words
  written as digits (``twenty one`` -> ``21``, up to 999). The unintelligible tag (default
  ``[unintelligible]``) is protected from all of it and kept as a word of its own: it is a label
  ("I could not hear this"), counted, never noise.
* **WER** is the standard one: word-level Levenshtein distance divided by the reference length.
  Between two annotators (no reference) the agreement measure is the mean of both directions.
* **Consensus** is ROVER-style: every transcript is aligned word by word to the medoid (the
  transcript with the smallest total distance to the others); words that fall on the same slot
  vote, a gap (deletion) votes for nothing, and insertions between two slots form slots of their
  own. Each slot keeps its most voted word (ties: the medoid's); gap winners are dropped.
* **HLP**: each annotator's transcript scored against the ROVER consensus of the others (WER).
"""

import dataclasses
import re
import string
from collections import Counter
from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

__all__ = ["Normaliser", "rover", "wer", "pairwise_wer"]

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_NUMBER = {word: value for value, word in enumerate(_UNITS)} | _TENS


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """What is normalised before transcripts are compared."""

    lowercase: bool = True
    punctuation: bool = True
    fillers: tuple[str, ...] = ("um", "uh", "er", "ah", "hmm", "mm", "erm")
    number_words: bool = True
    unintelligible: str = "[unintelligible]"

    @classmethod
    def from_dict(cls, raw: dict | None) -> "Normaliser":
        """From a parsed YAML mapping (unknown keys are an error)."""
        raw = dict(raw or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown normaliser option {unknown[0]!r} (options: {', '.join(sorted(known))})")
        if "fillers" in raw:
            raw["fillers"] = tuple(str(f).lower() for f in raw["fillers"] or ())
        return cls(**raw)

    def words(self, text: str) -> list[str]:
        """The normalised words of one transcript."""
        tag = self.unintelligible
        parts = text.split(tag) if tag else [text]
        words: list[str] = []
        for position, part in enumerate(parts):
            if position:
                words.append(tag)
            words.extend(self._normalise_words(part))
        return words

    def _normalise_words(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.punctuation:
            text = re.sub(rf"[{re.escape(string.punctuation)}\u2026\u2013\u2014]", " ", text.replace("'", ""))
        fillers = {f.lower() if self.lowercase else f for f in self.fillers}
        words = [w for w in text.split() if w not in fillers]
        return _numbers_as_digits(words) if self.number_words else words


def _numbers_as_digits(words: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(words):
        value, used = _read_number(words, i)
        if used:
            out.append(str(value))
            i += used
        else:
            out.append(words[i])
            i += 1
    return out


def _read_number(words: list[str], i: int) -> tuple[int, int]:
    """A number of up to three digits spelled from ``words[i]``: (value, words used) or (0, 0)."""
    value, used = 0, 0
    if i < len(words) and words[i] in _NUMBER and i + 1 < len(words) and words[i + 1] == "hundred":
        if 1 <= _NUMBER[words[i]] <= 9:
            value, used = _NUMBER[words[i]] * 100, 2
            if i + used < len(words) and words[i + used] == "and":
                used += 1
    j = i + used
    if j < len(words) and words[j] in _TENS:
        value += _TENS[words[j]]
        used += 1
        if j + 1 < len(words) and words[j + 1] in _NUMBER and 1 <= _NUMBER[words[j + 1]] <= 9:
            value += _NUMBER[words[j + 1]]
            used += 1
    elif j < len(words) and words[j] in _NUMBER and (used == 0 or _NUMBER[words[j]] > 0):
        value += _NUMBER[words[j]]
        used += 1
    if used and words[i + used - 1] == "and":  # "one hundred and" with nothing after
        used -= 1
    return value, used


def wer(reference: Sequence[str], hypothesis: Sequence[str]) -> float | None:
    """Word error rate: Levenshtein distance over words / reference length (None for an empty reference)."""
    if not reference:
        return None if not hypothesis else float(len(hypothesis))
    return Levenshtein.distance(list(reference), list(hypothesis)) / len(reference)


def pairwise_wer(a: Sequence[str], b: Sequence[str]) -> float:
    """Symmetric disagreement of two transcripts: the mean of both directions' WER (0 when both are empty)."""
    if not a and not b:
        return 0.0
    return (
        Levenshtein.distance(list(a), list(b)) / max(len(a), 1)
        + Levenshtein.distance(list(b), list(a)) / max(len(b), 1)
    ) / 2


def _align(pivot: Sequence[str], other: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """A minimal-edit alignment: (pivot index or None, other index or None) pairs in order."""
    n, m = len(pivot), len(other)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(
                cost[i - 1][j - 1] + (pivot[i - 1] != other[j - 1]), cost[i - 1][j] + 1, cost[i][j - 1] + 1
            )
    pairs, i, j = [], n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (pivot[i - 1] != other[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


def rover(transcripts: Sequence[Sequence[str]]) -> list[str]:
    """ROVER-style consensus of normalised transcripts (see the module docstring)."""
    transcripts = [list(t) for t in transcripts]
    if not transcripts:
        return []
    if len(transcripts) == 1:
        return transcripts[0]
    totals = [sum(Levenshtein.distance(t, u) for u in transcripts) for t in transcripts]
    pivot = transcripts[min(range(len(transcripts)), key=lambda k: (totals[k], k))]
    # slot (i, 0) holds the pivot's word i; slots (i, k >= 1) the k-th word inserted after it (i = -1: before all)
    votes: dict[tuple[int, int], Counter] = {}
    for transcript in transcripts:
        last, inserted = -1, 0
        for p, o in _align(pivot, transcript):
            if p is not None:
                last, inserted = p, 0
                slot = (p, 0)
                word = transcript[o] if o is not None else None
            else:
                inserted += 1
                slot = (last, inserted)
                word = transcript[o]
            votes.setdefault(slot, Counter())[word] += 1
    result = []
    for slot in sorted(votes):
        counter = votes[slot]
        counter[None] += len(transcripts) - sum(counter.values())  # transcripts with nothing in this slot
        best = max(counter.values())
        winners = [w for w, n in counter.items() if n == best]
        if slot[1] == 0 and pivot[slot[0]] in winners:
            word = pivot[slot[0]]
        elif None in winners:
            word = None
        else:
            word = min(winners)
        if word is not None:
            result.append(word)
    return result
