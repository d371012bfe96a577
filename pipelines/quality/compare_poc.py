"""Comparing a pandas proof of concept with the pipeline, feature by feature.

Engineers promoting a POC want to know where the production pipeline disagrees with the script
they trusted, and why. ``compare_poc`` runs the POC function on the raw CSV, runs the same rows
through the run's serving graph (which ``verify-parity`` proves equal to what Beam wrote), and
reports per feature the share of rows that differ and the largest difference, with the POC's own
explanation of expected differences (its module-level ``EXPECTED_DIFFERENCES`` dict).
"""

import csv
import importlib
import io
import os

import numpy as np
from apache_beam.io.filesystem import BeamIOError

from pipelines.errors import UsageError
from pipelines.io import files

__all__ = ["compare_poc", "load_poc"]

FLOAT_TOLERANCE = 1e-6


def load_poc(spec: str):
    """Loads ``MODULE:FUNCTION`` (a module name, or a path to a .py file) and its explanations.

    The module's ``EXPECTED_DIFFERENCES`` maps a feature to why the POC and the pipeline differ on
    it, and how much that explains: ``{"reason": ..., "max_share": 0.02, "max_abs_diff": 0.5}`` (the
    largest share of rows, and for numbers the largest absolute difference). A feature that differs
    beyond its bound, or whose entry states none, fails.

    Returns:
        ``(function, expected_differences)``.
    """
    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name:
        raise UsageError(f"--poc must be MODULE:FUNCTION, got {spec!r}")
    import schemas

    try:
        if module_name.endswith(".py") or os.sep in module_name:
            module = schemas.load_module_file(module_name)
        else:
            module = importlib.import_module(module_name)
    except (ImportError, ValueError) as error:
        raise UsageError(f"cannot import the POC {module_name!r}: {error}") from None
    if not callable(getattr(module, function_name, None)):
        raise UsageError(f"the POC module has no function {function_name!r}")
    return getattr(module, function_name), dict(getattr(module, "EXPECTED_DIFFERENCES", {}))


def _bound(entry) -> tuple[str | None, float | None, float | None]:
    """``(reason, max_share, max_abs_diff)`` of an ``EXPECTED_DIFFERENCES`` entry; no bound is None."""
    if isinstance(entry, dict):
        return entry.get("reason"), entry.get("max_share"), entry.get("max_abs_diff")
    return (str(entry) if entry else None), None, None


def _judge(entry: dict, expected) -> str | None:
    """The explanation of a feature's difference, or None when it is unexplained (``entry`` gets why)."""
    reason, max_share, max_abs_diff = _bound(expected)
    entry["bound"] = {"max_share": max_share, "max_abs_diff": max_abs_diff} if reason else None
    if not reason:
        entry["explanation"] = "unexplained"
        return None
    if max_share is None:
        entry["explanation"] = f"unexplained: the expected difference states no bound (max_share) ({reason})"
        return None
    beyond = []
    if entry["mismatch_rate"] > max_share:
        beyond.append(f"{entry['mismatch_rate']:.2%} of rows > {max_share:.2%}")
    diff = entry["max_abs_diff"]
    if diff is not None and max_abs_diff is not None and not diff <= max_abs_diff:
        beyond.append(f"|diff| {diff:.3g} > {max_abs_diff:.3g}")
    if beyond:
        entry["explanation"] = f"beyond its bound ({'; '.join(beyond)}): {reason}"
        return None
    entry["explanation"] = reason
    return reason


def _provenance_columns(output_dir: str) -> set[str]:
    """``row_id`` and the dataset's metadata columns: carried along, not prepared, so not compared."""
    import schemas

    try:
        record = files.read_json(files.join(output_dir, "run.json"))
        return set(schemas.load_dataset(record["dataset"]).not_model_inputs)
    except (OSError, KeyError, ValueError, BeamIOError):
        return {"row_id"}


def compare_poc(poc: str, input_csv: str, output_dir: str) -> dict:
    """Runs the POC and the pipeline's serving graph on the same raw rows and compares them.

    Args:
        poc: ``MODULE:FUNCTION``; the function takes the raw CSV as a pandas DataFrame and returns
            a DataFrame of transformed features, one row per input row, named like the pipeline's.
        input_csv: The raw rows.
        output_dir: A ``skewless run`` output (its ``serving_model/`` is used).

    Returns:
        ``{"rows": compared, "rows_rejected_by_pipeline", "unexplained": [...], "features": {name:
        {"mismatch_rate", "max_abs_diff", "explanation"}}}``.
    """
    import pandas as pd

    from pipelines.prepare.export import SIGNATURE
    from pipelines.serving.model import ServingModel

    function, explanations = load_poc(poc)
    try:
        data = files.read_bytes(input_csv)
        raw = pd.read_csv(io.BytesIO(data))
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    except (OSError, ValueError, BeamIOError) as error:
        raise UsageError(f"cannot read {input_csv}: {error}") from None
    poc_out = function(raw)
    if len(poc_out) != len(rows):
        raise UsageError(f"the POC returned {len(poc_out)} rows for {len(rows)} input rows")
    model = ServingModel(files.join(output_dir, "serving_model"), signature=SIGNATURE)
    decoded = model.decode(rows)
    examples, valid, rejected = decoded.examples, decoded.valid, decoded.dead_letters
    pipeline_out = {}
    for start in range(0, len(examples), 5000):
        for name, values in model.predict_examples(examples[start : start + 5000]).items():
            pipeline_out.setdefault(name, []).append(values)
    pipeline_out = {name: np.concatenate(parts) for name, parts in pipeline_out.items()}
    features, unexplained = {}, []
    provenance = _provenance_columns(output_dir)
    for name in sorted(pipeline_out):
        if name in provenance and name not in poc_out.columns:
            features[name] = {"mismatch_rate": None, "max_abs_diff": None, "explanation": "provenance, not compared"}
            continue
        if name not in poc_out.columns:
            features[name] = {"mismatch_rate": 1.0, "max_abs_diff": None, "explanation": "absent from the POC output"}
            unexplained.append(name)
            continue
        ours, theirs = pipeline_out[name], poc_out[name].to_numpy()[valid]
        if np.issubdtype(ours.dtype, np.number):
            diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
            differs = ~(diff <= FLOAT_TOLERANCE) if np.issubdtype(ours.dtype, np.floating) else diff != 0
            max_diff = float(np.nanmax(diff)) if len(diff) else 0.0
        else:
            differs = np.array(
                [a != (b.encode() if isinstance(b, str) else b) for a, b in zip(ours, theirs, strict=True)]
            )
            max_diff = None
        rate = float(differs.mean()) if len(differs) else 0.0
        entry = {"mismatch_rate": rate, "max_abs_diff": max_diff, "explanation": None, "bound": None}
        if rate and _judge(entry, explanations.get(name)) is None:
            unexplained.append(name)
        features[name] = entry
    return {
        "rows": len(valid),
        "rows_rejected_by_pipeline": len(rejected),
        "unexplained": unexplained,
        "features": features,
    }
