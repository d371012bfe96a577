"""Normalisers, comparison levels (numpy == splink's SQL on DuckDB) and Fellegi-Sunter weights."""

import math

import duckdb
import numpy as np
import pytest

from pipelines.dedup import matching

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "kind, raw, expected",
    [
        ("name", "  José  O'Brien-Smith ", "jose o'brien-smith"),
        ("name", "NOVA", "nova"),
        ("name", " ", None),
        ("string", "12 Main St., Apt #4", "12 main st apt 4"),
        ("email", "Jane.Doe+news@Mail.COM", "janedoe@mail.com"),
        ("email", "jane doe@mail.com", "janedoe@mail.com"),
        ("phone", "+61 (0)4 1234-5678", "412345678"),
        ("phone", "0412 345 678", "412345678"),
        ("date", "19560231", "1956-02-31"),
        ("date", "1956/2/3", "1956-02-03"),
        ("date", "03/02/1956", "1956-02-03"),
        ("date", "Feb 1956", "1956"),
        ("number", "1,024.0", "1024"),
        ("postcode", "sw1a 1aa", "SW1A1AA"),
        ("exact", " wa ", "wa"),
        ("exact", None, None),
    ],
)
def test_normalise(kind, raw, expected):
    assert matching.normalise(kind, raw) == expected


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown comparison kind"):
        matching.normalise("colour", "red")


def test_levels_of_hand_made_pairs():
    left = ["martha", "martha", "dwayne", "dixon", None, "abc"]
    right = ["martha", "marhta", "duane", "dicksonx", "x", "xyz"]
    # exact=3, JW>=0.92=2 (martha/marhta 0.961), JW>=0.80=1 (dwayne/duane 0.84), else 0, null -1
    assert matching.comparison_levels("name", left, right).tolist() == [3, 2, 1, 1, -1, 0]
    assert matching.comparison_levels(
        "email",
        ["ann@a.com", "ann@a.com", "annb@a.com", "ann@a.com"],
        ["ann@a.com", "ann@b.org", "anb@c.net", "zed@a.com"],
    ).tolist() == [3, 2, 1, 0]
    assert matching.comparison_levels(
        "date", ["1956-02-03"] * 4, ["1956-02-03", "1956-02-04", "1965-02-03", "2001-01-01"]
    ).tolist() == [3, 2, 1, 0]


def _duckdb_levels(kind: str, left: list, right: list) -> list[int]:
    """The comparison vector value splink's SQL for ``kind`` gives on DuckDB."""
    cases = " ".join(
        f"WHEN {matching._sql_level(measure, parameter, 'v')} THEN {len(matching.LEVELS[kind]) - i}"
        for i, (_, measure, parameter) in enumerate(matching.LEVELS[kind])
    )
    sql = f'SELECT CASE WHEN "v_l" IS NULL OR "v_r" IS NULL THEN -1 {cases} ELSE 0 END AS g FROM pairs ORDER BY i'
    con = duckdb.connect()
    con.execute('CREATE TABLE pairs (i INTEGER, "v_l" VARCHAR, "v_r" VARCHAR)')
    con.executemany(
        "INSERT INTO pairs VALUES (?, ?, ?)", [(i, a, b) for i, (a, b) in enumerate(zip(left, right, strict=True))]
    )
    return [row[0] for row in con.execute(sql).fetchall()]


@pytest.mark.parametrize("kind", matching.KINDS)
def test_numpy_levels_equal_splink_sql_on_duckdb(kind):
    rng = np.random.default_rng(3)
    words = [
        "smith",
        "smyth",
        "smithe",
        "jones",
        "jonas",
        "x",
        "ann@a.com",
        "ann@b.com",
        "an@a.com",
        "19560203",
        "1956-02-03",
    ]
    words += ["".join(rng.choice(list("abcdeilmnorst"), size=rng.integers(1, 9))) for _ in range(40)]
    left = [matching.normalise(kind, w) for w in rng.choice(words, 600)]
    right = [matching.normalise(kind, w) for w in rng.choice(words, 600)]
    right[:40] = left[:40]  # plenty of exact matches
    assert matching.comparison_levels(kind, left, right).tolist() == _duckdb_levels(kind, left, right)


def test_match_weights_follow_fellegi_sunter_with_term_frequencies():
    model = {
        "probability_two_random_records_match": 0.2,
        "fields": {
            "surname": {
                "kind": "name",
                "tf": True,
                "levels": [
                    {"label": "exact", "gamma": 3, "m": 0.8, "u": 0.01},
                    {"label": "jw92", "gamma": 2, "m": 0.1, "u": 0.02},
                    {"label": "jw80", "gamma": 1, "m": 0.05, "u": 0.1},
                    {"label": "else", "gamma": 0, "m": 0.05, "u": 0.87},
                ],
            }
        },
    }
    levels = {"surname": np.array([3, 3, 2, 0, -1])}
    tf = np.array([0.04, np.nan, 0.5, 0.5, np.nan])
    weights = matching.match_weights(
        levels, model, {"surname": tf}, {"surname": np.array([0.001, np.nan, 0.5, 0.5, 0.3])}
    )
    prior = math.log2(0.2 / 0.8)
    expected = [
        prior + math.log2(0.8 / 0.01) + math.log2(0.01 / 0.04),  # rare value: tf = max(0.04, 0.001)
        prior + math.log2(0.8 / 0.01),  # no term frequency known: plain u
        prior + math.log2(0.1 / 0.02),
        prior + math.log2(0.05 / 0.87),
        prior,  # null: Bayes factor 1
    ]
    assert weights.tolist() == pytest.approx(expected)
    assert matching.probabilities(np.array([0.0, 1.0]))[0] == 0.5
