"""Training/serving skew and drift: a batch of serving inputs against the training statistics.

``check_skew`` reads the serving batch with the same reader and schema validation as ``skewless
run`` and computes its statistics on Beam, counting numbers into the training histogram's bins.
Per raw feature it then reports:

* schema anomalies: rows rejected for the feature (missing required value, out of domain,
  unparsable), and string values never seen in training ("new values");
* a distribution distance: L-infinity over value frequencies for strings (categorical features),
  Jensen-Shannon divergence (base 2, in [0, 1]) over the histogram for numbers;

and fails the features whose figures cross their thresholds.
"""

import dataclasses

import apache_beam as beam
import numpy as np
import yaml
from apache_beam.io.filesystem import BeamIOError
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipelines.errors import UsageError
from pipelines.io import files, input_files, read
from pipelines.lineage import run_record
from pipelines.quality import anomalies, feature_stats, statistics, validate
from pipelines.runtime.options import pipeline_options

__all__ = [
    "DEFAULT_THRESHOLDS",
    "RECORD",
    "check_skew",
    "compare_statistics",
    "failure_reason",
    "jensen_shannon",
    "l_infinity",
    "load_thresholds",
]

RECORD = "<record>"  # the report's name for rejections of whole records (ragged, undecodable, empty lines)

DEFAULT_THRESHOLDS = {
    "linf": 0.1,  # strings: largest difference of a value's frequency
    "js": 0.1,  # numbers: Jensen-Shannon divergence of the histograms
    "new_values": 0.01,  # strings: share of serving values never seen in training
    "invalid": 0.01,  # share of serving rows rejected because of the feature
    "missing": 0.1,  # change in the share of rows without a value
}


def schema_comparators(schema) -> dict[str, dict[str, float]]:
    """``{feature: {"linf" | "js": threshold}}`` from the schema's ``skew_comparator`` (else its
    ``drift_comparator``): ``infinity_norm`` is the L-infinity limit of strings,
    ``jensen_shannon_divergence`` the Jensen-Shannon limit of numbers, as TFDV reads them."""
    found = {}
    for feature in schema.feature:
        for comparator in (feature.skew_comparator, feature.drift_comparator):
            limits = {}
            if comparator.HasField("infinity_norm") and comparator.infinity_norm.HasField("threshold"):
                limits["linf"] = comparator.infinity_norm.threshold
            if comparator.HasField("jensen_shannon_divergence") and comparator.jensen_shannon_divergence.HasField(
                "threshold"
            ):
                limits["js"] = comparator.jensen_shannon_divergence.threshold
            if limits:
                found[feature.name] = limits
                break
    return found


def with_schema_comparators(thresholds: tuple[dict, dict], schema) -> tuple[dict, dict]:
    """``thresholds`` with the schema's comparators: a feature's threshold in the YAML's
    ``features:`` wins, then the schema's comparator, then the YAML's ``default:``, then the
    built-in default."""
    default, per_feature = thresholds
    merged = {name: dict(limits) for name, limits in schema_comparators(schema).items()}
    for name, limits in per_feature.items():
        merged[name] = {**merged.get(name, {}), **limits}
    return default, merged


def load_thresholds(path: str | None) -> tuple[dict, dict]:
    """Reads ``default:`` and per-feature ``features:`` thresholds from YAML (defaults without a file)."""
    if not path:
        return dict(DEFAULT_THRESHOLDS), {}
    try:
        config = yaml.safe_load(files.read_text(path)) or {}
    except (OSError, yaml.YAMLError, BeamIOError) as error:
        raise UsageError(f"cannot read thresholds {path}: {str(error).splitlines()[0]}") from None
    unknown = set(config) - {"default", "features"}
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)} (expected default:, features:)")
    default = dict(DEFAULT_THRESHOLDS, **(config.get("default") or {}))
    for name, values in [("default", default), *((config.get("features") or {}).items())]:
        bad = set(values) - set(DEFAULT_THRESHOLDS)
        if bad:
            raise UsageError(f"{path}: {name} has unknown thresholds {sorted(bad)}")
    return default, dict(config.get("features") or {})


def jensen_shannon(p_counts, q_counts) -> float:
    """Jensen-Shannon divergence (base 2, 0 = same, 1 = disjoint) of two count vectors.

    0 when either side is empty: there is no distribution to compare (missing values are checked
    separately)."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return max(0.0, (kl(p, m) + kl(q, m)) / 2)


def l_infinity(p_counts: dict, q_counts: dict) -> float:
    """Largest absolute difference of value frequencies between two value->count maps (0 when
    either is empty)."""
    p_total, q_total = sum(p_counts.values()), sum(q_counts.values())
    if not p_total or not q_total:
        return 0.0
    return max(abs(p_counts.get(v, 0) / p_total - q_counts.get(v, 0) / q_total) for v in set(p_counts) | set(q_counts))


def _flag(entry: dict, check: str, description: str) -> None:
    """Records a threshold crossed: its line in ``anomalies`` and which check (``invalid``,
    ``missing``, ``distance``, ``new_values``) in ``checks`` (for the Anomalies proto)."""
    entry["anomalies"].append(description)
    entry["checks"].append({"name": check, "description": description})


def compare_statistics(training: dict, serving: dict, rejected: dict[str, int], rows: int, thresholds) -> dict:
    """Compares serving statistics with training statistics (both the ``ALL`` slice).

    Args:
        training: Training ``features`` statistics.
        serving: Serving ``features`` statistics (histograms counted into the training bins).
        rejected: Serving rows rejected per feature (dead letters).
        rows: Serving rows read.
        thresholds: ``(default, per_feature)`` from :func:`load_thresholds`.

    Returns:
        ``{"passed", "failed_features", "features": {name: {...}}}``.
    """
    default, per_feature = thresholds
    features, failed = {}, []
    for name, train in sorted(training.items()):
        limits = dict(default, **per_feature.get(name, {}))
        serve = serving.get(name, {})
        entry = {"kind": train["type"], "anomalies": [], "checks": []}
        invalid_share = rejected.get(name, 0) / rows if rows else 0.0
        entry["invalid_rows"] = rejected.get(name, 0)
        if invalid_share > limits["invalid"]:
            _flag(
                entry,
                "invalid",
                f"{rejected[name]} rows ({invalid_share:.2%}) rejected by the schema > {limits['invalid']:.2%}",
            )
        train_missing = train["missing"] / max(train["count"] + train["missing"], 1)
        serve_missing = serve.get("missing", 0) / max(serve.get("count", 0) + serve.get("missing", 0), 1)
        entry["missing_share"] = {"training": train_missing, "serving": serve_missing}
        if serve and abs(serve_missing - train_missing) > limits["missing"]:
            _flag(
                entry,
                "missing",
                f"missing in {serve_missing:.2%} of rows (training: {train_missing:.2%}), "
                f"a change > {limits['missing']:.0%}",
            )
        if train["type"] == "numeric":
            train_counts = train.get("histogram", {}).get("counts", [])
            serve_counts = serve.get("histogram", {}).get("counts", [0] * len(train_counts))
            value = jensen_shannon(train_counts, serve_counts) if train_counts else 0.0
            entry.update(distance="jensen_shannon", value=value, threshold=limits["js"])
            if value > limits["js"]:
                _flag(entry, "distance", f"Jensen-Shannon divergence {value:.4f} > {limits['js']}")
        else:
            train_top = {item["value"]: item["count"] for item in train.get("top", [])}
            serve_top = {item["value"]: item["count"] for item in serve.get("top", [])}
            value = l_infinity(train_top, serve_top)
            entry.update(distance="l_infinity", value=value, threshold=limits["linf"])
            if value > limits["linf"]:
                _flag(entry, "distance", f"L-infinity distance {value:.4f} > {limits['linf']}")
            complete = train.get("unique", 0) <= len(train_top)  # every training value is listed
            new = {v: c for v, c in serve_top.items() if v not in train_top} if complete else {}
            share = sum(new.values()) / serve.get("num_values", 1) if new and serve.get("num_values") else 0.0
            entry["new_values"] = {"share": share, "examples": sorted(new, key=lambda v: -new[v])[:10]}
            if share > limits["new_values"]:
                _flag(entry, "new_values", f"{share:.2%} of values never seen in training > {limits['new_values']:.2%}")
        entry["passed"] = not entry["anomalies"]
        if not entry["passed"]:
            failed.append(name)
        features[name] = entry
    return {"passed": not failed, "failed_features": failed, "features": features}


def _serving_statistics(sources, schema, boundaries, beam_args, csv_format: input_files.CsvFormat, near: str) -> tuple:
    """Runs the serving batch through ReadRawData and GenerateStatistics on Beam."""
    options = pipeline_options(list(beam_args))
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    with files.scratch_directory("check-skew", temp_location, near) as scratch:
        path = files.join(scratch, "serving_statistics.json")
        pipeline = beam.Pipeline(options=options)
        reader = read.ReadRawData(sources, schema, csv_format=csv_format)
        raw = pipeline | "ReadServingData" >> reader
        (
            raw[read.ReadRawData.BATCHES]
            | "DropRowKeys" >> beam.Map(lambda element: element[0])
            | "GenerateServingStatistics" >> statistics.GenerateStatistics(boundaries=boundaries)
            | "WriteServingStatistics" >> statistics.WriteStatistics(path)
        )
        result = pipeline.run()
        result.wait_until_finish()
        counters = run_record.collect_counters(result)
        serving = files.read_json(path)
    reasons = read.dead_letters_by_feature(counters)
    rejected = {feature or RECORD: sum(by_reason.values()) for feature, by_reason in reasons.items()}
    rows = counters.get((read.METRICS_NAMESPACE, "rows_read"), 0)
    return serving, rejected, reasons, reader.header_errors, rows


def check_skew(
    transform_output: str,
    patterns: list[str],
    thresholds_path: str | None,
    beam_args=(),
    csv_format: input_files.CsvFormat = input_files.DEFAULT_CSV_FORMAT,
    anomalies_path: str | None = None,
    statistics_path: str | None = None,
) -> dict:
    """Checks serving inputs against a run's training statistics and schema.

    Args:
        transform_output: A ``skewless run`` output (``stats/pre_transform.json``, ``metadata/``).
        patterns: Serving input files.
        thresholds_path: YAML thresholds, or None for the defaults.
        beam_args: Pass-through Beam flags.
        csv_format: How the serving CSV files are written (as for ``skewless run``).
        anomalies_path: Where to write the result as TFDV's ``Anomalies`` (text format), if at all.
        statistics_path: Where to write the serving batch's statistics as TFDV's
            ``DatasetFeatureStatisticsList`` (binary, ``FeatureStats.pb``), if at all.

    Returns:
        The report: ``compare_statistics`` plus ``rows`` and ``rejected_rows`` (per feature).
    """
    from tensorflow_transform.tf_metadata import metadata_io

    stats_path = files.join(transform_output, "stats", "pre_transform.json")
    if not files.exists(stats_path):
        raise UsageError(f"{transform_output} has no stats/pre_transform.json: is it a `skewless run` output?")
    training = files.read_json(stats_path)["slices"][statistics.ALL]
    schema = metadata_io.read_metadata(files.join(transform_output, "metadata")).schema
    thresholds = with_schema_comparators(load_thresholds(thresholds_path), schema)
    # serving data is read, and compared, as the schema's SERVING environment has it (TFDV's reading):
    # a feature kept out of it (a label's source) is neither required nor compared
    serving_schema = validate.for_environment(schema, validate.SERVING)
    compared = {f.name for f in schema.feature if validate.in_environment(schema, f, validate.SERVING)}
    record = run_record.require_transform_output(transform_output, "check-skew")
    recorded = input_files.CsvFormat.from_parameters(record.get("parameters", {}))
    # a serving export writes missing values as the training files did: the run's tokens, and the caller's
    missing = (*recorded.missing_values, *csv_format.missing_values)
    csv_format = dataclasses.replace(csv_format, missing_values=missing)
    sources = input_files.expand_patterns(patterns)
    boundaries = statistics.histogram_boundaries(training)
    described, rejected, reasons, header_errors, rows = _serving_statistics(
        sources, serving_schema, boundaries, beam_args, csv_format, transform_output
    )
    if rows == 0:
        raise UsageError("the serving input has no rows")
    serving = described["slices"].get(statistics.ALL, {"features": {}})
    record_reasons = reasons.pop("", {})
    in_serving = {name: stats for name, stats in training["features"].items() if name in compared}
    report = compare_statistics(in_serving, serving["features"], rejected, rows, thresholds)
    for feature, by_reason in reasons.items():
        if feature in report["features"]:
            report["features"][feature]["invalid_reasons"] = by_reason
    report.update(rows=rows, rejected_rows=rejected, training_rows=training["num_rows"])
    report["rejected_records_by_reason"] = dict(sorted(record_reasons.items(), key=lambda item: -item[1]))
    report["header_errors"] = header_errors  # files whose every line is rejected, and why
    if rejected.get(RECORD, 0) / rows > thresholds[0]["invalid"]:  # ragged, undecodable, empty lines
        report["passed"] = False
        report["failed_features"].append(RECORD)
    if statistics_path:
        feature_stats.write_proto(described, statistics_path)
    if anomalies_path:
        anomalies.write_text(anomalies.from_skew_report(report, schema), anomalies_path)
    return report


def failure_reason(report: dict) -> str:
    """The one line a failed check ends with: the features beyond their thresholds and, when whole
    records were rejected (a header lacking a column, ragged lines), how many and why."""
    reason = f"skew beyond thresholds on {', '.join(report['failed_features'])}"
    if RECORD in report["failed_features"]:
        why = ", ".join(f"'{name}' x{count}" for name, count in report["rejected_records_by_reason"].items())
        reason += f" ({report['rejected_rows'][RECORD]} of {report['rows']} records rejected: {why})"
        headers = report.get("header_errors", {})
        if headers:
            path, error = next(iter(headers.items()))
            more = f" (and {len(headers) - 1} more files: see header_errors)" if len(headers) > 1 else ""
            reason += f"; {path}: {error}{more}"
    return reason
