"""Row accounting of ``skewless run``: the counts its counters give, and the checks they must pass.

Every row read is accounted for: ``rows_read = rows_train + rows_eval + rows_dead_lettered +
rows_dropped_by_policy``; a run whose counts break that, or whose dead letters pass
``--max-invalid-fraction``, or whose damaged inputs lost rows nobody can count, fails.
"""

from pipelines.formats import blocks
from pipelines.io import read

__all__ = ["check_counts", "counts_of"]

# what the most common dead-letter reason usually means, when it is a reading option's business
_FAILURE_HINTS = {
    "invalid UTF-8": " (a file in another encoding? pass --encoding, e.g. cp1252)",
    "header mismatch": " (each dead letter gives the header's fault)",
}


def counts_of(counters: dict[tuple[str, str], int]) -> dict:
    """``run.json``'s ``counts`` from the pipeline's counters."""
    ns = read.METRICS_NAMESPACE
    return {
        "rows_read": counters.get((ns, "rows_read"), 0),
        "rows_train": counters.get((ns, "rows_train"), 0),
        "rows_eval": counters.get((ns, "rows_eval"), 0),
        "rows_dead_lettered": counters.get((ns, "rows_dead_lettered"), 0),
        "rows_dropped_by_policy": counters.get((ns, "rows_dropped_by_policy"), 0),
        # blank lines that end a CSV file: not rows, not dead letters, but never dropped unsaid
        "blank_lines_at_end": counters.get((ns, blocks.BLANK_LINES_AT_END), 0),
        "dropped_reasons": {
            name: value for (space, name), value in sorted(counters.items()) if space == "skewless.dropped_reasons"
        },
        "dead_letter_reasons": {
            name: value for (space, name), value in sorted(counters.items()) if space == read.DEAD_LETTER_NAMESPACE
        },
    }


def check_counts(counts: dict, max_invalid_fraction: float) -> str | None:
    """The reason the run fails its row accounting or invalid-row threshold, or None."""
    read_rows, dead = counts["rows_read"], counts["rows_dead_lettered"]
    accounted = counts["rows_train"] + counts["rows_eval"] + dead + counts["rows_dropped_by_policy"]
    if accounted != read_rows:
        return (
            f"row accounting broken: read {read_rows} != train + eval + dead-lettered + dropped by policy {accounted}"
        )
    if read_rows == 0:
        return "no rows were read"
    lost = {reason: n for reason, n in counts["dead_letter_reasons"].items() if reason in read.UNKNOWN_LOSS_REASONS}
    if lost:  # no threshold can weigh rows nobody can count
        found = ", ".join(f"{reason!r} x{n}" for reason, n in lost.items())
        return (
            f"damaged inputs lost rows, their number unknown ({found}); see dead_letter/ for where, "
            "then repair the files or fetch them again"
        )
    if dead / read_rows > max_invalid_fraction:
        top = max(counts["dead_letter_reasons"].items(), key=lambda kv: kv[1], default=("?", 0))
        return (
            f"{dead} of {read_rows} rows invalid ({dead / read_rows:.2%} > --max-invalid-fraction "
            f"{max_invalid_fraction:.2%}; most common: {top[0]!r} x{top[1]}); see dead_letter/"
            + _FAILURE_HINTS.get(top[0], "")
        )
    return None
