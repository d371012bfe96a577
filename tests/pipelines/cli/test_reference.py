"""The command reference in docs/ is the parser's own: regenerate it with ``make docs``."""

import pytest

from pipelines import cli
from pipelines.cli import reference
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.unit


def test_the_command_reference_matches_the_parser():
    written = (PROJECT_ROOT / "docs" / "reference" / "commands.md").read_text()
    assert written == reference.commands_markdown(), "docs/reference/commands.md is stale: run `make docs`"


def test_every_option_of_every_command_is_in_the_reference():
    text = reference.commands_markdown()
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    for name, command in commands.choices.items():
        assert f"## `skewless {name}`" in text
        for action in command._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                assert f"`{option}`" in text, (name, option)


def test_an_option_added_to_a_command_changes_the_reference():
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    commands.choices["report"].add_argument("--brand-new", help="a new option")
    assert "| `--brand-new` | `BRAND_NEW` |  | a new option |" in reference.commands_markdown(parser)
    assert reference.commands_markdown(parser) != reference.commands_markdown()
