"""check-skew: distances, thresholds, and the end-to-end verdict on shifted and unshifted data."""

import csv
import io
import json

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from pipelines import cli
from pipelines.errors import UsageError
from pipelines.quality import skew
from tests.helpers import sample_lines

pytestmark = pytest.mark.e2e


def test_jensen_shannon_known_values():
    assert skew.jensen_shannon([5, 5], [5, 5]) == 0.0
    assert skew.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert skew.jensen_shannon([1, 1], [1, 0]) == pytest.approx(0.311278, abs=1e-6)
    assert skew.jensen_shannon([0, 0], [1, 0]) == 0.0


def test_l_infinity_known_values():
    assert skew.l_infinity({"a": 2, "b": 2}, {"a": 1, "b": 1}) == 0.0
    assert skew.l_infinity({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2}) == pytest.approx(0.5)


def test_thresholds_file_overrides_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("default: {js: 0.2}\nfeatures: {fare: {js: 0.05}}\n")
    default, features = skew.load_thresholds(str(path))
    assert default == dict(skew.DEFAULT_THRESHOLDS, js=0.2) and features == {"fare": {"js": 0.05}}
    path.write_text("features: {fare: {kl: 0.05}}\n")
    with pytest.raises(UsageError, match=r"fare has unknown thresholds \['kl'\]"):
        skew.load_thresholds(str(path))


def test_schema_comparators_set_thresholds_and_a_features_yaml_threshold_wins(tmp_path):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(
        """
        feature { name: "fare" type: FLOAT skew_comparator { jensen_shannon_divergence { threshold: 0.05 } } }
        feature { name: "company" type: BYTES drift_comparator { infinity_norm { threshold: 0.3 } } }
        feature { name: "tips" type: FLOAT skew_comparator { infinity_norm { threshold: 0.2 } } }
        feature { name: "hour" type: INT }
        """,
        schema_pb2.Schema(),
    )
    assert skew.schema_comparators(schema) == {"fare": {"js": 0.05}, "company": {"linf": 0.3}, "tips": {"linf": 0.2}}
    path = tmp_path / "t.yaml"
    path.write_text("default: {js: 0.2, linf: 0.25}\nfeatures: {tips: {linf: 0.02}}\n")
    default, features = skew.with_schema_comparators(skew.load_thresholds(str(path)), schema)
    assert (default["js"], default["linf"]) == (0.2, 0.25)  # for features the schema sets nothing for
    assert features == {"fare": {"js": 0.05}, "company": {"linf": 0.3}, "tips": {"linf": 0.02}}


def _write(path, header: str, rows: list[list[str]]):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header.split(","))
    writer.writerows(rows)
    path.write_text(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "out"
    assert cli.main(["run", "--output", str(out)]) == 0  # the whole bundled sample
    return out


@pytest.fixture(scope="module")
def serving_rows():
    header, lines = sample_lines(3000)
    return header, [next(csv.reader([line])) for line in lines]


def _check(training, path, capsys, *flags) -> tuple[int, dict]:
    code = cli.main(["check-skew", "--transform-output", str(training), "--input", str(path), *flags])
    return code, json.loads(capsys.readouterr().out)


def _anomalies(path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), anomalies_pb2.Anomalies())


def test_a_sample_of_the_training_data_passes(training, serving_rows, tmp_path, capsys):
    header, rows = serving_rows
    flags = ["--anomalies", str(tmp_path / "anomalies.pbtxt")]
    code, report = _check(training, _write(tmp_path / "same.csv", header, rows), capsys, *flags)
    assert (code, report["passed"], report["failed_features"]) == (0, True, [])
    anomalies = _anomalies(tmp_path / "anomalies.pbtxt")
    assert not anomalies.anomaly_info and len(anomalies.drift_skew_info) == len(report["features"])
    assert report["rows"] == 3000 and report["training_rows"] == 15002
    assert "tips" not in report["features"]  # not in the schema's SERVING environment: not compared
    assert all(entry["value"] < 0.1 for entry in report["features"].values())


def test_doubled_fares_fail_on_fare_alone(training, serving_rows, tmp_path, capsys):
    header, rows = serving_rows
    index = header.split(",").index("fare")
    shifted = [row[:index] + [str(float(row[index]) * 2)] + row[index + 1 :] for row in rows]
    flags = ["--anomalies", str(tmp_path / "anomalies.pbtxt"), "--statistics", str(tmp_path / "FeatureStats.pb")]
    code, report = _check(training, _write(tmp_path / "fare.csv", header, shifted), capsys, *flags)
    assert (code, report["failed_features"]) == (1, ["fare"])
    assert report["features"]["fare"]["distance"] == "jensen_shannon" and report["features"]["fare"]["value"] > 0.1
    # the same verdict as TFDV's Anomalies: the drifted feature alone, with every distance measured
    anomalies = _anomalies(tmp_path / "anomalies.pbtxt")
    assert list(anomalies.anomaly_info) == ["fare"]
    (reason,) = anomalies.anomaly_info["fare"].reason
    assert reason.type == anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
    measured = {info.path.step[0]: info.skew_measurements[0] for info in anomalies.drift_skew_info}
    assert sorted(measured) == sorted(report["features"])
    assert measured["fare"].value == pytest.approx(report["features"]["fare"]["value"])
    assert measured["fare"].threshold == 0.1 and measured["company"].type == measured["company"].L_INFTY
    assert [f.name for f in anomalies.baseline.feature][:2] == ["company", "dropoff_census_tract"]
    # and the serving batch's statistics, as TFDV writes them
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString((tmp_path / "FeatureStats.pb").read_bytes())
    (dataset,) = stats.datasets
    assert (dataset.name, dataset.num_examples) == ("All Examples", 3000)
    fare = next(f for f in dataset.features if f.path.step == ["fare"])
    assert fare.num_stats.mean == pytest.approx(2 * report_mean(rows, index), rel=1e-6)


def report_mean(rows, index) -> float:
    values = [float(row[index]) for row in rows if row[index]]
    return sum(values) / len(values)


def test_payment_type_shifted_to_one_category_fails_on_payment_type_alone(training, serving_rows, tmp_path, capsys):
    header, rows = serving_rows
    index = header.split(",").index("payment_type")
    shifted = [row[:index] + ["Cash"] + row[index + 1 :] for row in rows]
    code, report = _check(
        training, _write(tmp_path / "pay.csv", header, shifted), capsys, "--anomalies", str(tmp_path / "a")
    )
    assert (code, report["failed_features"]) == (1, ["payment_type"])
    (reason,) = _anomalies(tmp_path / "a").anomaly_info["payment_type"].reason
    assert reason.type == anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH
    assert report["features"]["payment_type"]["distance"] == "l_infinity"


def test_schema_anomalies_new_values_and_rejected_rows(training, serving_rows, tmp_path, capsys):
    header, rows = serving_rows
    columns = header.split(",")
    hour, payment = columns.index("trip_start_hour"), columns.index("payment_type")
    anomalous = [list(row) for row in rows]
    for row in anomalous[:100]:
        row[hour] = "31"  # out of domain: rejected
    for row in anomalous[100:200]:
        row[payment] = "Crypto"  # a value training never saw
    code, report = _check(
        training, _write(tmp_path / "odd.csv", header, anomalous), capsys, "--anomalies", str(tmp_path / "a")
    )
    assert code == 1
    infos = _anomalies(tmp_path / "a").anomaly_info
    assert sorted(infos) == ["payment_type", "trip_start_hour"]
    assert [r.type for r in infos["trip_start_hour"].reason] == [anomalies_pb2.AnomalyInfo.INT_TYPE_BIG_INT]
    assert [r.type for r in infos["payment_type"].reason] == [
        anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES
    ]
    assert report["features"]["trip_start_hour"]["invalid_reasons"] == {"outside domain": 100}
    assert report["rejected_rows"] == {"trip_start_hour": 100}
    assert report["features"]["trip_start_hour"]["invalid_rows"] == 100
    assert report["features"]["payment_type"]["new_values"]["examples"] == ["Crypto"]
    assert report["features"]["payment_type"]["new_values"]["share"] == pytest.approx(100 / 2900)
    assert report["failed_features"] == ["payment_type", "trip_start_hour"]


def test_allow_quoted_newlines_reads_serving_values_spanning_lines(training, serving_rows, tmp_path, capsys):
    header, rows = serving_rows
    company = header.split(",").index("company")
    spanning = [row[:company] + [row[company] + "\n(night shift)"] + row[company + 1 :] for row in rows[:1000]]
    path = _write(tmp_path / "multi.csv", header, spanning)
    code, report = _check(training, path, capsys)
    assert (code, report["rows"], report["rejected_rows"]) == (1, 2000, {"<record>": 2000})  # each line a record
    argv = ["check-skew", "--transform-output", str(training), "--input", str(path), "--allow-quoted-newlines"]
    cli.main(argv)
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["rejected_rows"]) == (1000, {})
    assert all(v.endswith("\n(night shift)") for v in report["features"]["company"]["new_values"]["examples"])


def test_records_rejected_whole_are_counted_by_reason_and_named_in_the_failure_line(
    training, serving_rows, tmp_path, capsys
):
    """A serving export lacking a column fails with a line that says which column is missing."""
    header, rows = serving_rows
    path = _write(tmp_path / "no_tips.csv", ",".join(header.split(",")[:-1]), [row[:-1] for row in rows[:40]])
    with open(path, "a") as handle:
        handle.write("\n")
    assert cli.main(["check-skew", "--transform-output", str(training), "--input", str(path)]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["rejected_records_by_reason"] == {"header mismatch": 40}
    assert report["failed_features"][-1] == skew.RECORD and report["rejected_rows"][skew.RECORD] == 40
    assert report["header_errors"] == {str(path): "header mismatch: missing ['tips'], repeated none, 17 columns"}
    assert captured.err.splitlines()[-1].endswith(
        f"on <record> (40 of 40 records rejected: 'header mismatch' x40); {path}: header mismatch: missing ['tips'], "
        "repeated none, 17 columns"
    )
