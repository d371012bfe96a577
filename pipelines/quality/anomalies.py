"""Anomalies as TFDV writes them: an ``Anomalies`` proto in text format.

``skewless check-skew --anomalies FILE`` writes one ``AnomalyInfo`` per feature beyond a threshold,
with TFDV's anomaly types, and ``drift_skew_info`` carrying every distance measured (training
against serving is *skew* in TFDV's terms); ``skewless run`` writes the raw rows' schema violations
the same way (``anomalies.pbtxt`` beside ``run.json``). ``tfdv.load_anomalies_text`` reads both.

A reason of the schema (a dead letter's reason, ``docs/reference/dead-letters.md``) maps to TFDV's
anomaly type for that violation; a whole-record reason (a ragged line, an undecodable record) goes
to ``dataset_anomaly_info``.
"""

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2

from pipelines.io import files

__all__ = ["feature_kinds", "from_dead_letters", "from_skew_report", "to_text", "write_text"]

_Type = anomalies_pb2.AnomalyInfo.Type
_Measurement = anomalies_pb2.DriftSkewInfo.Measurement

# a dead letter's reason -> TFDV's type (by the feature's type where TFDV's types differ)
_REASONS = {
    "outside domain": {
        "string": _Type.ENUM_TYPE_UNEXPECTED_STRING_VALUES,
        "int": _Type.INT_TYPE_BIG_INT,
        "float": _Type.FLOAT_TYPE_BIG_FLOAT,
    },
    "unparsable int": _Type.INT_TYPE_NOT_INT_STRING,
    "unparsable float": _Type.FLOAT_TYPE_STRING_NOT_FLOAT,
    "missing required feature": _Type.FEATURE_TYPE_LOW_FRACTION_PRESENT,
    "too many values": _Type.FEATURE_TYPE_HIGH_NUMBER_VALUES,
    "not a finite float": _Type.FLOAT_TYPE_HAS_NAN,
    "invalid UTF-8": _Type.ENUM_TYPE_INVALID_UTF8,
}
_SHORT = {
    _Type.ENUM_TYPE_UNEXPECTED_STRING_VALUES: "Unexpected string values",
    _Type.FLOAT_TYPE_BIG_FLOAT: "Out-of-range values",
    _Type.INT_TYPE_BIG_INT: "Out-of-range values",
    _Type.INT_TYPE_NOT_INT_STRING: "Non-integer values",
    _Type.FLOAT_TYPE_STRING_NOT_FLOAT: "Non-float values",
    _Type.FEATURE_TYPE_LOW_FRACTION_PRESENT: "Column dropped",
    _Type.FEATURE_TYPE_HIGH_NUMBER_VALUES: "Superfluous values",
    _Type.FLOAT_TYPE_HAS_NAN: "Invalid values",
    _Type.ENUM_TYPE_INVALID_UTF8: "Invalid UTF-8",
    _Type.COMPARATOR_L_INFTY_HIGH: "High Linfty distance between training and serving",
    _Type.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH: (
        "High approximate Jensen-Shannon divergence between training and serving"
    ),
    _Type.SCHEMA_NEW_COLUMN: "New column",
    _Type.UNKNOWN_TYPE: "Invalid records",
}


def _add(anomalies, feature: str, kind: int, description: str) -> None:
    info = anomalies.anomaly_info[feature]
    if not info.path.step:
        info.path.step.append(feature)
    info.severity = anomalies_pb2.AnomalyInfo.ERROR
    info.reason.add(type=kind, short_description=_SHORT.get(kind, ""), description=description)
    info.short_description = info.reason[0].short_description if len(info.reason) == 1 else "Multiple errors"
    info.description = " ".join(reason.description for reason in info.reason)


def _new(schema=None) -> anomalies_pb2.Anomalies:
    anomalies = anomalies_pb2.Anomalies(anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH)
    if schema is not None:
        anomalies.baseline.CopyFrom(schema)
    return anomalies


def _reason_type(reason: str, kind: str) -> int:
    """TFDV's type of a dead letter's reason on a feature of ``kind`` (``int``, ``float``, ``string``)."""
    types = _REASONS.get(reason, _Type.UNKNOWN_TYPE)
    return types.get(kind, _Type.UNKNOWN_TYPE) if isinstance(types, dict) else types


def feature_kinds(schema) -> dict[str, str]:
    """``{feature: "int" | "float" | "string"}`` of a schema."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    names = {schema_pb2.INT: "int", schema_pb2.FLOAT: "float"}
    return {feature.name: names.get(feature.type, "string") for feature in schema.feature}


def from_dead_letters(by_feature: dict[str, dict[str, int]], rows: int, schema):
    """The schema violations of the rows read, one ``AnomalyInfo`` per feature at fault.

    Args:
        by_feature: ``{feature: {reason: rows}}``; the feature ``""`` holds whole-record reasons.
        rows: Rows read.
        schema: The schema checked against (the proto's ``baseline``).
    """
    kinds = feature_kinds(schema)
    anomalies = _new(schema)
    for feature, reasons in sorted(by_feature.items()):
        for reason, count in sorted(reasons.items()):
            description = f"{count} of {rows} rows: {reason}."
            if feature:
                _add(anomalies, feature, _reason_type(reason, kinds.get(feature, "string")), description)
            else:
                anomalies.dataset_anomaly_info.reason.add(
                    type=_Type.UNKNOWN_TYPE, short_description=reason, description=description
                )
    if anomalies.dataset_anomaly_info.reason:
        anomalies.dataset_anomaly_info.severity = anomalies_pb2.AnomalyInfo.ERROR
        anomalies.dataset_anomaly_info.description = " ".join(
            r.description for r in anomalies.dataset_anomaly_info.reason
        )
    return anomalies


def from_skew_report(report: dict, schema=None) -> anomalies_pb2.Anomalies:
    """The ``check-skew`` report as ``Anomalies``: a reason for each threshold crossed, and every
    distance measured in ``drift_skew_info`` (as skew: training against serving)."""
    anomalies = _new(schema)
    kinds = feature_kinds(schema) if schema is not None else {}
    for feature, entry in sorted(report["features"].items()):
        numeric = entry["kind"] == "numeric"
        measurement = anomalies.drift_skew_info.add()
        measurement.path.step.append(feature)
        measurement.skew_measurements.add(
            type=_Measurement.JENSEN_SHANNON_DIVERGENCE if numeric else _Measurement.L_INFTY,
            value=entry["value"],
            threshold=entry["threshold"],
        )
        for check in entry.get("checks", []):
            if check["name"] == "distance":
                kind = _Type.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH if numeric else _Type.COMPARATOR_L_INFTY_HIGH
            elif check["name"] == "new_values":
                kind = _Type.ENUM_TYPE_UNEXPECTED_STRING_VALUES
            elif check["name"] == "missing":
                kind = _Type.FEATURE_TYPE_LOW_FRACTION_PRESENT
            else:  # rows rejected by the schema, by their most frequent reason
                reasons = entry.get("invalid_reasons") or {}
                top = max(reasons, key=reasons.get) if reasons else ""
                kind = _reason_type(top, kinds.get(feature, "float" if numeric else "string"))
            _add(anomalies, feature, kind, check["description"])
    records = report.get("rejected_records_by_reason") or {}
    if records and "<record>" in report.get("failed_features", []):
        for reason, count in records.items():
            anomalies.dataset_anomaly_info.reason.add(
                type=_Type.UNKNOWN_TYPE, short_description=reason, description=f"{count} records: {reason}."
            )
        anomalies.dataset_anomaly_info.severity = anomalies_pb2.AnomalyInfo.ERROR
    return anomalies


def to_text(anomalies) -> str:
    """The proto in text format, as ``tfdv.write_anomalies_text`` writes it."""
    return text_format.MessageToString(anomalies)


def write_text(anomalies, path: str) -> None:
    """Writes the proto in text format (``tfdv.load_anomalies_text`` reads it)."""
    files.write_text(path, to_text(anomalies))
