"""Record matching: normalisers, comparison levels and Fellegi-Sunter scoring of candidate pairs.

One definition serves both halves of ``skewless dedup``:

* ``splink_comparison`` turns a field's comparison levels into splink SQL, so splink can estimate the
  model (m by EM, u by random sampling) on DuckDB over a sample;
* ``comparison_levels`` computes the very same levels in numpy/rapidfuzz for many pairs at once, so the
  full data is scored on Beam without a database.

A field's levels, most similar first (splink's ``comparison_vector_value`` counts down to 0 = else,
-1 = null in either record):

| kind     | levels                                                              |
|----------|---------------------------------------------------------------------|
| exact    | exact                                                               |
| name     | exact, Jaro-Winkler >= 0.92, Jaro-Winkler >= 0.80                    |
| string   | exact, Jaro-Winkler >= 0.90, Jaro-Winkler >= 0.70                    |
| email    | exact, same local part (any domain), local parts Jaro-Winkler >= 0.88 |
| phone    | exact, Levenshtein <= 1                                             |
| date     | exact, Levenshtein <= 1, Levenshtein <= 2 (typos in ISO dates)       |
| number   | exact, Levenshtein <= 1                                             |
| postcode | exact, Levenshtein <= 1                                             |

Values are compared after normalising (``normalise``); ``name``, ``string``, ``postcode`` and
``exact`` fields get splink's term-frequency adjustment on their exact level (a match on a rare
surname is stronger evidence than one on a common surname).
"""

import math
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
from rapidfuzz.distance import JaroWinkler, Levenshtein
from rapidfuzz.process import cpdist

__all__ = [
    "KINDS",
    "LEVELS",
    "TF_KINDS",
    "comparison_levels",
    "match_weights",
    "normalise",
    "splink_comparison",
]

# kind -> levels (label, measure, parameter), most similar first.
LEVELS: dict[str, list[tuple[str, str, float | None]]] = {
    "exact": [("exact", "exact", None)],
    "name": [("exact", "exact", None), ("jaro_winkler>=0.92", "jw", 0.92), ("jaro_winkler>=0.80", "jw", 0.80)],
    "string": [("exact", "exact", None), ("jaro_winkler>=0.90", "jw", 0.90), ("jaro_winkler>=0.70", "jw", 0.70)],
    "email": [
        ("exact", "exact", None),
        ("same local part", "local", None),
        ("local part jaro_winkler>=0.88", "local_jw", 0.88),
    ],
    "phone": [("exact", "exact", None), ("levenshtein<=1", "lev", 1)],
    "date": [("exact", "exact", None), ("levenshtein<=1", "lev", 1), ("levenshtein<=2", "lev", 2)],
    "number": [("exact", "exact", None), ("levenshtein<=1", "lev", 1)],
    "postcode": [("exact", "exact", None), ("levenshtein<=1", "lev", 1)],
}
KINDS = tuple(LEVELS)
TF_KINDS = frozenset({"exact", "name", "string", "postcode"})

_SPACES = re.compile(r"\s+")
_NOT_NAME = re.compile(r"[^a-z\s'-]")
_NOT_WORD = re.compile(r"[^\w\s]")
_DIGITS = re.compile(r"\D")
_YMD = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DMY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def _ascii_lower(text: str) -> str:
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalise(kind: str, value: str | None) -> str | None:
    """Normalises one raw value for comparison; empty results become None (a missing value).

    * name: lower case, accents removed, only letters, spaces, hyphens and apostrophes kept.
    * string: lower case, accents and punctuation removed.
    * email: lower case; in the local part a ``+tag`` is dropped and dots are removed
      (``Jane.Doe+news@Mail.com`` -> ``janedoe@mail.com``).
    * phone: digits only, the last 9 kept (drops country codes and trunk zeros).
    * date: ``YYYY-MM-DD`` from ``YYYYMMDD``, ``YYYY-MM-DD`` / ``YYYY/MM/DD`` or ``DD/MM/YYYY``
      (day first); anything else is kept as its digits, so a garbled date can still match by typo level.
    * number: digits, sign and decimal point; a trailing ``.0`` is dropped.
    * postcode: upper case, no spaces.
    * exact: surrounding spaces removed.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if kind == "name":
        text = _ascii_lower(text)
        if not text.isalpha():
            text = _SPACES.sub(" ", _NOT_NAME.sub("", text)).strip()
    elif kind == "string":
        text = _SPACES.sub(" ", _NOT_WORD.sub("", _ascii_lower(text))).strip()
    elif kind == "email":
        text = text.lower().replace(" ", "")
        local, at, domain = text.partition("@")
        text = local.split("+", 1)[0].replace(".", "") + at + domain
    elif kind == "phone":
        text = _DIGITS.sub("", text)[-9:]
    elif kind == "date":
        text = _normalise_date(text)
    elif kind == "number":
        text = re.sub(r"[^\d.\-]", "", text)
        if text.endswith(".0"):
            text = text[:-2]
    elif kind == "postcode":
        text = text.upper().replace(" ", "")
    elif kind != "exact":
        raise ValueError(f"unknown comparison kind {kind!r} (kinds: {', '.join(KINDS)})")
    return text or None


def _normalise_date(text: str) -> str:
    for pattern, order in ((_COMPACT, (0, 1, 2)), (_YMD, (0, 1, 2)), (_DMY, (2, 1, 0))):
        found = pattern.match(text)
        if found:
            parts = found.groups()
            year, month, day = (parts[i] for i in order)
            return f"{year}-{int(month):02d}-{int(day):02d}"
    return _DIGITS.sub("", text)


def _sql_level(measure: str, parameter, column: str) -> str:
    left, right = f'"{column}_l"', f'"{column}_r"'
    if measure == "exact":
        return f"{left} = {right}"
    if measure == "jw":
        return f"jaro_winkler_similarity({left}, {right}) >= {parameter}"
    if measure == "lev":
        return f"levenshtein({left}, {right}) <= {int(parameter)}"
    if measure == "local":
        return f"split_part({left}, '@', 1) = split_part({right}, '@', 1)"
    if measure == "local_jw":
        return f"jaro_winkler_similarity(split_part({left}, '@', 1), split_part({right}, '@', 1)) >= {parameter}"
    raise ValueError(measure)


def splink_comparison(column: str, kind: str, term_frequencies: bool):
    """The splink ``CustomComparison`` computing ``kind``'s levels on ``column``."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    levels = [cll.NullLevel(column)]
    for position, (label, measure, parameter) in enumerate(LEVELS[kind]):
        level = cll.CustomLevel(_sql_level(measure, parameter, column), label_for_charts=label)
        if position == 0 and term_frequencies:
            level = level.configure(tf_adjustment_column=column, tf_adjustment_weight=1.0)
        levels.append(level)
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(comparison_levels=levels, output_column_name=column)


def _as_strings(values: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    missing = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    return np.array(["" if v is None else v for v in values], dtype=object), missing


def comparison_levels(kind: str, left: Sequence[str | None], right: Sequence[str | None]) -> np.ndarray:
    """Comparison vector values of many pairs: -1 null, 0 else, ``len(levels)`` for exact.

    Args:
        kind: One of ``KINDS``.
        left, right: Normalised values of the pairs' two records (None = missing).

    Returns:
        An int8 array, one value per pair, equal to what splink computes with ``splink_comparison``.
    """
    a, a_missing = _as_strings(left)
    b, b_missing = _as_strings(right)
    levels = LEVELS[kind]
    result = np.zeros(len(a), dtype=np.int8)
    if not len(a):
        return result
    cache: dict[str, np.ndarray] = {}
    for position in range(len(levels) - 1, -1, -1):  # least similar first; more similar levels overwrite
        _, measure, parameter = levels[position]
        if measure == "exact":
            hit = a == b
        elif measure == "jw":
            if "jw" not in cache:
                cache["jw"] = cpdist(a, b, scorer=JaroWinkler.similarity, dtype=np.float64, workers=1)
            hit = cache["jw"] >= parameter
        elif measure == "lev":
            if "lev" not in cache:
                cache["lev"] = cpdist(a, b, scorer=Levenshtein.distance, dtype=np.int32, workers=1)
            hit = cache["lev"] <= parameter
        elif measure in ("local", "local_jw"):
            if "local" not in cache:
                cache["local"] = np.array([v.split("@", 1)[0] for v in a], dtype=object)
                cache["local_b"] = np.array([v.split("@", 1)[0] for v in b], dtype=object)
            if measure == "local":
                hit = cache["local"] == cache["local_b"]
            else:
                similarity = cpdist(cache["local"], cache["local_b"], scorer=JaroWinkler.similarity, dtype=np.float64)
                hit = similarity >= parameter
        else:
            raise ValueError(measure)
        result[np.asarray(hit, dtype=bool)] = len(levels) - position
    result[a_missing | b_missing] = -1
    return result


def match_weights(
    field_levels: dict[str, np.ndarray],
    model: dict,
    tf_left: dict[str, np.ndarray] | None = None,
    tf_right: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Fellegi-Sunter match weights (log2 Bayes factors plus the prior) of many pairs.

    Args:
        field_levels: field -> comparison vector values (``comparison_levels``).
        model: The fitted model (``model.json``): prior and per-level m and u.
        tf_left, tf_right: field -> the records' term frequencies, for fields with a
            term-frequency adjustment (missing value = NaN).

    Returns:
        float64 weights; the match probability is ``2**w / (1 + 2**w)``.
    """
    prior = model["probability_two_random_records_match"]
    total = np.full(len(next(iter(field_levels.values()))), math.log2(prior / (1 - prior)))
    for field, levels in field_levels.items():
        spec = model["fields"][field]
        table = np.zeros(int(max(level["gamma"] for level in spec["levels"])) + 2)
        for level in spec["levels"]:
            m, u = level.get("m"), level.get("u")
            if m and u:
                table[level["gamma"] + 1] = math.log2(m / u)
        total += table[levels.astype(np.int64) + 1]
        if spec.get("tf") and tf_left is not None and field in tf_left:
            exact = next(level for level in spec["levels"] if level["label"] == "exact")
            if exact.get("u"):
                frequency = np.fmax(tf_left[field], tf_right[field])
                hit = (levels == exact["gamma"]) & ~np.isnan(frequency)
                total[hit] += np.log2(exact["u"] / frequency[hit])
    return total


def probabilities(weights: np.ndarray) -> np.ndarray:
    """Match probabilities from match weights."""
    return 1.0 / (1.0 + np.exp2(-np.clip(weights, -1000.0, 1000.0)))
