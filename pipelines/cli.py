"""The ``skewless`` command line.

Every command prints a short summary to stderr and exits 0 on success, 1 when a check it performs
fails, 2 on bad usage or unreadable input, always with a one-line reason. Flags a command does not
know are Beam pipeline options (``--runner``, ``--direct_num_workers``, ``--project``, ...).
"""

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]

_EPILOG_RUN = """examples:
  skewless run --output out/demo
  skewless run --input 'data/trips-*.csv' --output out/trips --eval-fraction 0.1
  skewless run --output out/mp --direct_running_mode=multi_processing --direct_num_workers=2
  skewless run --input gs://bucket/trips/*.csv --output gs://bucket/out --runner DataflowRunner \\
      --project my-project --region europe-west1 --temp_location gs://bucket/tmp --setup_file ./setup.py
"""


def _quiet_libraries() -> None:
    """Keeps TensorFlow's and Beam's start-up chatter off stderr (warnings and errors still show)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hides what native code prints while TensorFlow loads (CUDA and oneDNN notices that no
    environment variable turns off); Python exceptions still surface once it is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skewless",
        description="Replicable ML data preparation on Apache Beam + TensorFlow Transform.",
        epilog="Run 'skewless COMMAND --help' for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="read, validate, split, analyze and transform a dataset; write transformed examples",
        description="Runs the dataset's preprocessing_fn on Beam: transform_fn/, transformed_metadata/, "
        "metadata/, transformed/{train,eval}-*.tfrecord.gz, dead_letter/*.jsonl and run.json under OUTPUT. "
        "Unknown flags are passed to Beam.",
        epilog=_EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--dataset", default="taxi", help="dataset name under schemas/ (default: taxi)")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="PATTERN",
        help="input files (CSV, Parquet or tf.Example TFRecord; glob, gs:// allowed; repeatable); "
        "default: the dataset's bundled sample",
    )
    run.add_argument("--output", required=True, metavar="DIR", help="output directory (replaced when the run ends)")
    run.add_argument(
        "--eval-fraction", type=_fraction, default=0.2, help="share of rows for eval, by row hash (default: 0.2)"
    )
    run.add_argument(
        "--max-invalid-fraction",
        type=_fraction,
        default=0.01,
        help="fail (exit 1) when more than this share of rows is dead-lettered (default: 0.01)",
    )
    return parser


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    with _native_stderr_silenced():
        import tensorflow as tf

        from pipelines import run as run_job

        tf.config.list_physical_devices("GPU")  # probes CUDA now, while its notices are hidden

    started = time.time()
    record = run_job.run(
        run_job.RunConfig(
            output=args.output,
            dataset=args.dataset,
            inputs=args.input,
            eval_fraction=args.eval_fraction,
            max_invalid_fraction=args.max_invalid_fraction,
        ),
        beam_args,
    )
    counts = record["counts"]
    where = args.output if "://" in args.output else os.path.abspath(args.output)
    print(
        f"skewless run: {counts['rows_read']:,} rows read -> {counts['rows_train']:,} train, "
        f"{counts['rows_eval']:,} eval, {counts['rows_dead_lettered']:,} dead-lettered "
        f"in {time.time() - started:.1f} s\noutputs in {where}/: "
        "transform_fn/ transformed_metadata/ metadata/ transformed/ dead_letter/ run.json",
        file=sys.stderr,
    )
    return 0


_BEAM_COMMANDS = {"run": _run}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 success, 1 a check failed, 2 bad usage or unreadable input.
    """
    from pipelines.errors import SkewlessError

    parser = _build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and args.command not in _BEAM_COMMANDS:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    _quiet_libraries()
    try:
        return _BEAM_COMMANDS[args.command](args, rest)
    except SkewlessError as error:
        print(f"skewless {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code


def console_main() -> None:
    """Entry point of the ``skewless`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
