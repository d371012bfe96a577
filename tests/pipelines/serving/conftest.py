"""Fixtures shared by the serving tests: one `run` on awkward rows and one trained model, built once."""

import csv
import io

import pytest

from pipelines import cli
from tests.helpers import sample_lines

REQUIRED = {
    "trip_start_month": "5",
    "trip_start_hour": "19",
    "trip_start_day": "6",
    "trip_start_timestamp": "1400269500",
    "trip_miles": "1.5",
    "payment_type": "Cash",
}
AWKWARD = [
    {},  # every optional column missing
    {"company": "Never Seen Cab Co", "payment_type": "Bitcoin"},  # unseen vocabulary
    {"fare": "1e30", "tips": "3.4e38", "trip_miles": "0.000001", "trip_seconds": "9223372036854775807"},
    {"pickup_longitude": "-179.999", "dropoff_latitude": "-89.5", "dropoff_census_tract": "-5", "fare": "0"},
    {"trip_start_hour": " 7 ", "fare": " 12.5", "trip_start_timestamp": "0"},  # padded numbers
    {"company": 'Comma, Quote "Cab"', "pickup_community_area": "77", "dropoff_community_area": "1"},
]


def _awkward_lines(header: str) -> list[str]:
    columns = header.split(",")
    lines = []
    for overrides in AWKWARD:
        row = {c: "" for c in columns} | REQUIRED | overrides
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([row[c] for c in columns])
        lines.append(buffer.getvalue())
    return lines


@pytest.fixture(scope="package")
def run_dir(tmp_path_factory):
    header, lines = sample_lines(400)
    path = tmp_path_factory.mktemp("input") / "awkward.csv"
    path.write_text(header + "\n" + "\n".join(lines + _awkward_lines(header)) + "\n")
    out = tmp_path_factory.mktemp("run") / "out"
    argv = ["run", "--input", str(path), "--output", str(out), "--parity-sample", "1"]
    assert cli.main(argv) == 0
    return out, path


@pytest.fixture(scope="package")
def trained(run_dir):
    out, _ = run_dir
    assert cli.main(["train", "--transform-output", str(out), "--epochs", "2"]) == 0
    return out / "model"
