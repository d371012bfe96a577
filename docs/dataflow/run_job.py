"""The Flex Template's entry point: ``skewless run`` with the template's parameters.

Dataflow passes each parameter as ``--name=value`` (``--eval_fraction=0.1``), and its own pipeline
options (``--runner``, ``--project``, ``--temp_location``, ``--sdk_container_image``, ...) the same
way; Skewless's flags are spelled with hyphens, so the names of ``metadata.json`` are mapped.
"""

import sys

from pipelines.cli import main

SKEWLESS_FLAGS = {
    "dataset",
    "input",
    "output",
    "eval_fraction",
    "max_invalid_fraction",
    "slice_by",
    "output_format",
    "parity_sample",
    "analysis_cache",
    "labels",
    "label_key",
    "label_policy",
    "csv_delimiter",
    "encoding",
    "missing_value",
}


def skewless_argv(argv: list[str]) -> list[str]:
    """``skewless run``'s command line from the template's (``--eval_fraction=0.1`` becomes
    ``--eval-fraction=0.1``; Beam's options pass as they are)."""
    mapped = ["run"]
    for argument in argv:
        name, equals, value = argument[2:].partition("=")
        if argument.startswith("--") and name in SKEWLESS_FLAGS:
            argument = f"--{name.replace('_', '-')}{equals}{value}"
        mapped.append(argument)
    return mapped


if __name__ == "__main__":
    sys.exit(main(skewless_argv(sys.argv[1:])))
