"""Deterministic taxi-like CSVs of any size: the bundled sample resampled, numbers jittered.

    python benchmarks/generate_taxi.py --rows 1000000 --output benchmarks/data/taxi_1000000.csv

The same --rows and --seed always give the same bytes. Memory stays bounded: rows are made and
written in chunks.
"""

import argparse
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "schemas" / "taxi" / "data.csv"
# column: (decimals, relative standard deviation of the jitter)
JITTERED = {
    "fare": (2, 0.05),
    "trip_miles": (2, 0.05),
    "tips": (2, 0.05),
    "pickup_latitude": (6, 0.0002),
    "pickup_longitude": (6, 0.0002),
    "dropoff_latitude": (6, 0.0002),
    "dropoff_longitude": (6, 0.0002),
}
CHUNK = 500_000


def _jitter(column: pa.Array, rng: np.random.Generator, decimals: int, sd: float) -> pa.Array:
    """Multiplies the non-empty numeric cells by 1 + N(0, sd); empty cells stay empty."""
    empty = np.asarray(pc.equal(column, ""))
    values = np.asarray(pc.cast(pc.if_else(pa.array(empty), "0", column), pa.float64()))
    values = values * (1 + rng.normal(0, sd, len(values)))
    text = np.char.mod(f"%.{decimals}f", np.round(values, decimals))
    return pa.array(np.where(empty, "", text))


def generate(rows: int, output: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Writes ``rows`` taxi-like rows (plus a header) to ``output``; returns the path."""
    columns = SAMPLE.open().readline().strip().split(",")
    sample = pa_csv.read_csv(
        SAMPLE,
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in columns}, strings_can_be_null=False
        ),
    )
    rng = np.random.default_rng(seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with open(partial, "wb") as handle:
        handle.write((",".join(sample.column_names) + "\n").encode())
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            chunk = sample.take(pa.array(rng.integers(0, sample.num_rows, n)))
            for name, (decimals, sd) in JITTERED.items():
                index = chunk.column_names.index(name)
                jittered = _jitter(chunk.column(name).combine_chunks(), rng, decimals, sd)
                chunk = chunk.set_column(index, name, jittered)
            pa_csv.write_csv(chunk, handle, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    partial.rename(output)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(generate(args.rows, args.output, args.seed))


if __name__ == "__main__":
    main()
