"""Labelling rounds: agreement per class, round after round, to see when instruction changes stop paying off.

``skewless labels --round NAME`` stores the round's agreement (overall and per class; the measure
depends on the kind: percent agreement for classes, mean IoU of matched boxes for boxes, 1 - mean
pairwise WER for transcripts) in ``DIR/rounds.json``, carrying over the rounds already there (or in
``--previous-rounds``), and prints how each class moved since the previous round.
"""

from pipelines.io import files

__all__ = ["PLATEAU", "load_rounds", "rounds_table", "update_rounds"]

PLATEAU = 0.02  # an overall gain below this since the previous round: further changes stopped paying off


def load_rounds(path: str | None) -> list[dict]:
    """The rounds of a ``rounds.json`` (or of a labels output directory holding one); [] when absent."""
    if not path:
        return []
    if not files.exists(path):  # a labels output directory
        path = files.join(path, "rounds.json")
    if not files.exists(path):
        return []
    return files.read_json(path).get("rounds", [])


def update_rounds(previous: list[dict], name: str, kind: str, measure: str, overall, per_class: dict) -> list[dict]:
    """``previous`` with this round added (replacing an earlier round of the same name), with changes."""
    rounds = [r for r in previous if r["round"] != name]
    entry = {"round": name, "kind": kind, "measure": measure, "overall": overall, "per_class": dict(per_class)}
    if rounds:
        last = rounds[-1]
        entry["change_since"] = last["round"]
        entry["overall_change"] = None if overall is None or last["overall"] is None else overall - last["overall"]
        entry["per_class_change"] = {
            c: (v - last["per_class"][c]) if v is not None and last["per_class"].get(c) is not None else None
            for c, v in per_class.items()
        }
        change = entry["overall_change"]
        entry["plateau"] = change is not None and change < PLATEAU
    return [*rounds, entry]


def rounds_table(rounds: list[dict]) -> str:
    """A text table: one row per class, one column per round, with the change from the round before."""
    if not rounds:
        return ""
    classes = sorted({c for r in rounds for c in r["per_class"]})
    header = f"{'class':<20}" + "".join(f"{r['round'][:18]:>20}" for r in rounds)
    lines = [f"agreement by round ({rounds[-1]['measure']})", header]

    def cell(value, change):
        if value is None:
            return f"{'-':>20}"
        text = f"{value:.3f}" + (f" ({change:+.3f})" if change is not None else "")
        return f"{text:>20}"

    for label, key in [("overall", None), *[(c, c) for c in classes]]:
        row = f"{label[:19]:<20}"
        for r in rounds:
            if key is None:
                row += cell(r["overall"], r.get("overall_change"))
            else:
                row += cell(r["per_class"].get(key), (r.get("per_class_change") or {}).get(key))
        lines.append(row)
    last = rounds[-1]
    if last.get("plateau"):
        lines.append(
            f"round {last['round']} gained {last['overall_change']:+.3f} over {last['change_since']} "
            f"(< {PLATEAU}): further instruction changes have stopped paying off"
        )
    return "\n".join(lines)
