"""``skewless init``: scaffold a dataset project in your own repository from its data files."""

import argparse
import os
import sys

from pipelines.cli import arguments

NAME = "init"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "init",
        help="scaffold a dataset project (schema, config, preprocessing_fn, test) from your data files",
        description="Infers the schema of the input files and writes, under DIR: schemas/NAME/schema.pbtxt, "
        "schemas/NAME/config.yaml, transforms/NAME.py (a working preprocessing_fn generated from the schema, "
        "each choice commented) and tests/test_NAME.py. Refuses to overwrite a file without --force.",
        epilog="example:\n  skewless init penguins --input data/penguins.csv --label species\n"
        "  skewless run --dataset schemas/penguins --output out/penguins",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", help="the dataset's name (a Python identifier)")
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN", help="the data files")
    parser.add_argument("--label", metavar="COLUMN", help="the column a model predicts (classes or a number)")
    parser.add_argument("--dir", default=".", metavar="DIR", help="the project's root (default: .)")
    parser.add_argument("--force", action="store_true", help="overwrite the project's files if they exist")
    arguments.add_csv_arguments(parser)


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.project.scaffold import init_project

    project = init_project(
        args.name,
        args.input,
        args.label,
        args.dir,
        args.force,
        args.csv_delimiter,
        args.encoding,
        tuple(args.missing_value),
    )
    here = os.getcwd()

    def shown_path(path: str) -> str:  # relative to the working directory when under it
        return os.path.relpath(path, here) if os.path.commonpath([path, here]) == here else path

    shown = {key: shown_path(getattr(project, key)) for key in ("schema", "config", "module", "test")}
    dataset = shown_path(project.dataset)
    missing = ", ".join(repr(token) for token in project.missing_values) or "none but the empty cell"
    lines = [
        f"skewless init: {args.name} -> {shown['schema']} {shown['config']} {shown['module']} {shown['test']}",
        f"missing-value texts found: {missing}",
        "next:",
        f"  skewless run --dataset {dataset} --output out/{args.name}",
    ]
    if project.label:
        lines += [
            f"  skewless train --transform-output out/{args.name}",
            f"  skewless serve --model out/{args.name}/model/serving --port 8501",
        ]
    lines += [f"  skewless verify-parity out/{args.name}", f"  pytest {shown['test']}"]
    print("\n".join(lines), file=sys.stderr)
    return 0
